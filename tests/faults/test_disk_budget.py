"""An outage long enough to exhaust the agents' disk budget: the oldest readings are thinned, the
loss is reported, and the server shows it. Every reading taken is stored once or reported thinned."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import device_pb2, device_pb2_grpc

from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.access.principal import ROLE_VIEWER
from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest
from tests.support.access import make_key
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# A chatty sensor with long names: about 200 bytes a reading in the buffer, 500 a second,
# so a 1.1 MiB budget is full after about 8 s of outage.
WIDE = "w" * 60
CHATTY = f"""
[[inputs.simulated]]
  kind = "generic"
  sensor = "chatty-{WIDE[:50]}"
  measurement = "{WIDE}"
  unit = "{WIDE[:30]}"
  interval = "2ms"
"""
OUTAGE_S = 15


@pytest.fixture
def query(database_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        ["query"],
        {"SENSORMESH_DATABASE_URL": database_url, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"},
        tmp_path / "query.log",
    )
    try:
        service.wait_serving()
        yield service
    finally:
        assert service.stop() == 0


async def test_thinning_in_a_long_outage_is_reported_and_everything_else_stored_once(
    database_url: str,
    ingest: Ingest,
    fleet: Fleet,
    query: ServiceProcess,
    fault_report: Callable[[int, list[Account]], None],
) -> None:
    fleet.disk_budget = "1100KiB"
    fleet.extra_inputs = CHATTY
    await fleet.add(2)
    fleet.start()
    await fleet.wait_for_progress(200)
    ingest.kill()
    await asyncio.sleep(OUTAGE_S)
    await ingest.start()
    await fleet.wait_for_delivery(within=90)
    await fleet.wait_for_reports()  # so the server's record below is whole

    accounts = await fleet.stop_and_account()
    fault_report(1, accounts)
    viewer = await make_key(database_url, "faults-viewer", ROLE_VIEWER)  # reading a device needs a viewer
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{query.port}", interceptors=aio_interceptors(viewer)
    ) as channel:
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        for account in accounts:
            account.assert_exact()
            assert account.thinned > 1000, account  # the budget was exhausted, not merely approached
            device = await stub.GetDevice(device_pb2.GetDeviceRequest(device_id=account.device_id))
            shown = {t.sensor: t.count for t in device.device.thinned}
            assert sum(shown.values()) == account.thinned_reported == account.thinned
            assert "sim-imu" in shown and any(s.startswith("chatty-") for s in shown)  # evenly, per sensor
    for agent in fleet.agents:
        assert "event=buffer_thinned" in agent.log_path.read_text()
