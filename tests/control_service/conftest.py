"""Real control and ingest services over one fresh database, an operator key and devices.

The device's side of commands is played by hand (tests/support/command_device.py)
against the real ingest service; the operator's side calls the real control
service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import grpc
import pytest
from pydantic import SecretStr
from sensormesh.v1 import command_pb2_grpc

from control_service.server import ControlServer, start_control_server
from control_service.settings import ControlSettings
from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage.registry import create_device
from tests.support.access import make_key
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str


def control_settings(database_url: str, **overrides: object) -> ControlSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "control_listen": "127.0.0.1:0",
        "pool_min_size": 1,
        "pool_max_size": 4,
        "command_sweep_interval": timedelta(milliseconds=100),
    }
    values.update(overrides)
    return ControlSettings(**values)  # type: ignore[arg-type]


def ingest_settings(database_url: str, **overrides: object) -> IngestSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "ingest_listen": "127.0.0.1:0",
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    values.update(overrides)
    return IngestSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def control(database_url: str) -> AsyncIterator[ControlServer]:
    server = await start_control_server(control_settings(database_url), database_url=database_url)
    try:
        yield server
    finally:
        await server.stop(0.5)


@pytest.fixture
async def ingest(database_url: str) -> AsyncIterator[IngestServer]:
    server = await start(ingest_settings(database_url))
    try:
        yield server
    finally:
        await server.stop(grace=1)


@pytest.fixture
async def operator_key(database_url: str) -> str:
    return await make_key(database_url, "test-admin")


@pytest.fixture
async def commands_stub(
    control: ControlServer, operator_key: str
) -> AsyncIterator[command_pb2_grpc.CommandServiceStub]:
    address = f"127.0.0.1:{control.port}"
    async with grpc.aio.insecure_channel(address, interceptors=aio_interceptors(operator_key)) as channel:
        yield command_pb2_grpc.CommandServiceStub(channel)


@pytest.fixture
async def register(db: asyncpg.Connection) -> Callable[[str], Awaitable[Device]]:
    async def make(device_id: str) -> Device:
        record, token = await create_device(db, device_id)
        return Device(record.device_id, token)

    return make


@pytest.fixture
async def device(register: Callable[[str], Awaitable[Device]]) -> Device:
    return await register("greenhouse-pi")


@pytest.fixture
async def device_channel(ingest: IngestServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        yield channel


@pytest.fixture
async def connected(device_channel: grpc.aio.Channel, device: Device) -> AsyncIterator[DeviceChannel]:
    """The device's command channel, open and acknowledged."""
    opened = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await opened.expect("opened")
    try:
        yield opened
    finally:
        opened.cancel()


@dataclass
class CommandStack:
    """A `sensormesh control` process over a module's database, with one device that advertises
    ping and set_interval, called synchronously (for hypothesis, which drives sync tests)."""

    target: str
    device_id: str
    key: str

    def send(self, name: str, values: dict[str, object]) -> tuple[grpc.StatusCode, set[str]]:
        """SendCommand's status code and the fields its violations name."""
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status
        from sensormesh.v1 import command_pb2

        from sensormesh_core.command_parameters import as_struct

        request = command_pb2.SendCommandRequest(
            device_id=self.device_id, name=name, parameters=as_struct(values)
        )
        with grpc.insecure_channel(self.target) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            try:
                stub.SendCommand(request, metadata=(("authorization", f"Bearer {self.key}"),), timeout=10)
            except grpc.RpcError as error:
                status = rpc_status.from_call(error)  # type: ignore[arg-type]
                fields = set()
                for detail in status.details if status else ():
                    if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                        bad = error_details_pb2.BadRequest()
                        detail.Unpack(bad)
                        fields |= {v.field for v in bad.field_violations}
                return error.code(), fields  # type: ignore[attr-defined]
        return grpc.StatusCode.OK, set()


@pytest.fixture(scope="module")
def command_stack(
    postgres_admin_url: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CommandStack]:
    import asyncio
    import uuid
    from pathlib import Path

    from sensormesh_core.storage import command_offers
    from sensormesh_core.storage.database import with_database
    from sensormesh_core.storage.embedded import ensure_database
    from tests.conftest import _drop_database
    from tests.support.command_device import PING, SET_INTERVAL
    from tests.support.processes import ServiceProcess

    name = f"sensormesh_commands_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    url = with_database(postgres_admin_url, name)

    async def prepare() -> str:
        conn = await asyncpg.connect(url)
        try:
            await create_device(conn, "hypothesis-pi")
            await command_offers.advertise(conn, "hypothesis-pi", [PING, SET_INTERVAL])
        finally:
            await conn.close()
        return await make_key(url, "hypothesis-operator")

    key = asyncio.run(prepare())
    logs = Path(tmp_path_factory.mktemp("commands"))
    env = {"SENSORMESH_DATABASE_URL": url, "SENSORMESH_CONTROL_LISTEN": "127.0.0.1:0"}
    control = ServiceProcess(["control"], env, logs / "control.log")
    try:
        port = control.wait_serving()
        yield CommandStack(f"127.0.0.1:{port}", "hypothesis-pi", key)
    finally:
        assert control.stop() == 0
        _drop_database(postgres_admin_url, name)
