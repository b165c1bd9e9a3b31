"""End to end: a real `sensormesh agent` process with simulated sensors uploads
through the real Envoy binary to the real ingest service; a REST client watches
its live feed meanwhile, and afterwards reads everything back over REST and
over gRPC (through the same Envoy): raw and downsampled history, latest values,
and the device with its sensors, series and input states."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from sensormesh.v1 import device_pb2, device_pb2_grpc, query_pb2, query_pb2_grpc

from sensormesh_cli.bearer import aio_interceptors
from tests.envoy.conftest import RestDevice, Stack, register
from tests.envoy.json_stream import json_array_items

pytestmark = [pytest.mark.storage, pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
device_id = "{device_id}"

[uplink]
  target = "{target}"
  tls = false
  batch_max_age = "100ms"
  stream_max_duration = "1s"
  backoff_initial = "50ms"
  backoff_max = "500ms"

[buffer]
  path = "{buffer}"
  commit_interval = "50ms"

[[inputs.simulated]]
  kind = "imu"
  interval = "10ms"

[[inputs.simulated]]
  kind = "environment"
  interval = "100ms"

[[inputs.simulated]]
  kind = "generic"
  sensor = "soil-probe"
  interval = "100ms"

[[inputs.cpu_temp]]
  zone = "{missing_zone}"
"""
IMU_QUANTITIES = {
    "acceleration_x",
    "acceleration_y",
    "acceleration_z",
    "angular_rate_x",
    "angular_rate_y",
    "angular_rate_z",
}


@pytest.fixture
async def device(http: httpx.AsyncClient) -> RestDevice:
    return await register(http, "agent")


@pytest.fixture
def agent_config(stack: Stack, device: RestDevice, tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        CONFIG.format(
            device_id=device.device_id,
            target=stack.grpc_target,  # the agent's streams go through Envoy
            buffer=tmp_path / "buffer.sqlite3",
            missing_zone=tmp_path / "no-thermal-zone",
        )
    )
    return path


async def _watch(
    http: httpx.AsyncClient, device: RestDevice, count: int, subscribed: asyncio.Event
) -> list[dict[str, Any]]:
    """Readings of the REST live feed until `count` arrived; `subscribed` is set with its headers."""
    readings: list[dict[str, Any]] = []
    async with http.stream("GET", f"/v1/devices/{device.device_id}/readings:watch") as response:
        assert response.status_code == 200
        subscribed.set()
        async with asyncio.timeout(60):
            async for item in json_array_items(response):
                assert item.get("missedCount", "0") == "0"
                readings += item.get("readings", [])
                if len(readings) >= count:
                    break
    return readings


async def _start_agent(config: Path, device: RestDevice, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensormesh_cli", "agent", "--config", str(config),
            cwd=ROOT, env={**os.environ, "SENSORMESH_AGENT_TOKEN": device.token}, stdout=out, stderr=out,
        )  # fmt: skip


def as_json(message: Any) -> dict[str, Any]:
    """A message as Envoy's transcoder prints it (zero values and empty lists included)."""
    printed: dict[str, Any] = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return printed


def _points(series: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    return {
        (s["sensor"], s["quantity"]): [(p["time"], p["value"]) for p in s.get("points", [])] for s in series
    }


async def test_an_agent_uploads_through_envoy_and_everything_reads_back_over_rest_and_grpc(
    stack: Stack, http: httpx.AsyncClient, device: RestDevice, agent_config: Path, tmp_path: Path
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)

    subscribed = asyncio.Event()
    watching = asyncio.create_task(_watch(http, device, 400, subscribed))
    async with asyncio.timeout(10):
        await subscribed.wait()  # every later commit reaches the feed
    log = tmp_path / "agent.log"
    agent = await _start_agent(agent_config, device, log)
    try:
        live = await watching
    finally:
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await agent.wait()
    assert code == 0, log.read_text()[-3000:]

    # The live feed over REST: readings in order per sensor, none twice.
    by_sensor: dict[str, list[str]] = {}
    for reading in live:
        by_sensor.setdefault(reading["sensor"], []).append(reading["sampleTime"])
    for sensor, times in by_sensor.items():
        assert times == sorted(times) and len(set(times)) == len(times), sensor
    assert {"sim-imu", "sim-environment", "soil-probe"} <= set(by_sensor)

    path = f"/v1/devices/{device.device_id}"
    described = (await http.get(path)).json()["device"]
    committed = int(described["committedSequence"])
    assert committed >= 400

    window = {
        "startTime": started.isoformat().replace("+00:00", "Z"),
        "endTime": (datetime.now(UTC) + timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
    }
    raw = (await http.get(f"{path}/readings", params={**window, "pageSize": 100_000})).json()
    assert "nextPageToken" not in raw or not raw["nextPageToken"]
    rest_points = _points(raw["series"])
    imu_count = len(rest_points[("sim-imu", "acceleration_x")])
    assert {("sim-imu", q) for q in IMU_QUANTITIES} <= set(rest_points)
    assert {len(rest_points[("sim-imu", q)]) for q in IMU_QUANTITIES} == {imu_count}
    assert ("sim-environment", "temperature") in rest_points and (
        "soil-probe",
        "soil_moisture",
    ) in rest_points
    # Every reading the feed delivered is in the history, and the history holds
    # every committed reading (the agent's inputs report no gaps in sequence).
    stored_times = {t for t, _ in rest_points[("sim-imu", "acceleration_x")]}
    assert set(by_sensor["sim-imu"]) <= stored_times
    total = (
        imu_count
        + len(rest_points[("sim-environment", "temperature")])
        + len(rest_points[("soil-probe", "soil_moisture")])
    )
    assert total == committed

    # The same over gRPC through Envoy.
    async with grpc.aio.insecure_channel(
        stack.grpc_target, interceptors=aio_interceptors(stack.admin_key)
    ) as channel:
        queries = query_pb2_grpc.QueryServiceStub(channel)
        request = query_pb2.ListReadingsRequest(device_id=device.device_id, page_size=100_000)
        json_format.ParseDict(window, request)
        grpc_raw = await queries.ListReadings(request)
        request.interval.FromSeconds(1)
        grpc_buckets = await queries.ListReadings(request)
        grpc_latest = await queries.GetLatestReadings(
            query_pb2.GetLatestReadingsRequest(device_id=device.device_id)
        )
        grpc_device = await device_pb2_grpc.DeviceServiceStub(channel).GetDevice(
            device_pb2.GetDeviceRequest(device_id=device.device_id)
        )
    assert _points(as_json(grpc_raw)["series"]) == rest_points

    # Downsampled to 1 s, over REST and gRPC: the buckets account for every raw point.
    rest_buckets = (await http.get(f"{path}/readings", params={**window, "interval": "1s"})).json()
    assert rest_buckets == as_json(grpc_buckets)
    for series in rest_buckets["series"]:
        values = [v for _, v in rest_points[(series["sensor"], series["quantity"])]]
        buckets = series["buckets"]
        assert sum(int(b["count"]) for b in buckets) == len(values)
        assert min(b["min"] for b in buckets) == min(values) and max(b["max"] for b in buckets) == max(values)

    # Latest values: the last raw point of every series, over REST and gRPC.
    rest_latest = (await http.get(f"{path}/readings:latest")).json()["values"]
    assert rest_latest == as_json(grpc_latest)["values"]
    assert {(v["sensor"], v["quantity"]): v["value"] for v in rest_latest} == {
        key: points[-1][1] for key, points in rest_points.items()
    }

    # The device as the agent left it: sensors with their series, input states.
    assert as_json(grpc_device)["device"] == described
    sensors = {s["name"]: {q["quantity"] for q in s["series"]} for s in described["sensors"]}
    assert sensors["sim-imu"] == IMU_QUANTITIES
    assert {"temperature", "relative_humidity", "pressure"} <= sensors["sim-environment"]
    assert sensors["soil-probe"] == {"soil_moisture"}
    inputs = {i["input"]: i for i in described["inputStatuses"]}
    failing = [i for i in inputs.values() if i["state"] == "INPUT_STATE_FAILING"]
    assert len(failing) == 1 and failing[0]["lastError"], inputs
    assert {i["state"] for name, i in inputs.items() if name != failing[0]["input"]} == {"INPUT_STATE_OK"}
