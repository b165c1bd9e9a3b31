"""The local stack's pieces on their own: preflight checks, the agents' configs, the watch view."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import reading_pb2

from gateway_agent.config import AgentSettings, build_inputs
from sensormesh_cli.stack import demo
from sensormesh_cli.stack.examples import display_path, reachable
from sensormesh_cli.stack.preflight import DataFolderLock, Listener, check_ports
from sensormesh_cli.stack.status import StepFailed
from sensormesh_cli.watch_view import DeviceView, line, values
from tests.support.ports import free_port


def test_a_taken_port_is_named_with_the_flag_that_changes_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StepFailed, match=rf"port {port} \(query\) is taken.*--query"):
            check_ports(
                [
                    Listener("Envoy", f"127.0.0.1:{free_port()}", "--http"),
                    Listener("query", f"127.0.0.1:{port}", "--query"),
                ]
            )


def test_two_pieces_on_one_address_are_refused() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(StepFailed, match="both want"):
        check_ports([Listener("ingest", address, "--ingest"), Listener("query", address, "--query")])


def test_one_stack_per_data_folder(tmp_path: Path) -> None:
    first, second = DataFolderLock(tmp_path), DataFolderLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StepFailed, match="another `sensormesh up`"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


@pytest.mark.parametrize("device", [d for d in demo.DEMO_DEVICES if d.is_gateway], ids=lambda d: d.device_id)
def test_the_generated_agent_config_is_one_the_agent_accepts(device: demo.DemoDevice, tmp_path: Path) -> None:
    token = tmp_path / "t.token"
    token.write_text("smdt_x\n")
    path = demo.agent_config(device, token, "127.0.0.1:50051", tmp_path / "agents")
    settings = AgentSettings.load(path)
    assert settings.device_id == device.device_id and settings.device_token() == "smdt_x"
    assert settings.uplink.tls is False and settings.buffer.path.parent == (tmp_path / "agents").resolve()
    assert len(build_inputs(settings.inputs)) == len(device.inputs["simulated"])


def test_wildcard_binds_are_shown_as_loopback_and_paths_relative_when_inside(tmp_path: Path) -> None:
    assert reachable("0.0.0.0:8080") == "127.0.0.1:8080"
    assert reachable("[::1]:8080") == "[::1]:8080"
    assert display_path(tmp_path / "a" / "b", cwd=tmp_path) == "a/b"
    assert display_path(Path("/elsewhere/x"), cwd=tmp_path) == "/elsewhere/x"


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, UTC))
    return stamp


def test_the_view_shows_each_quantity_of_each_payload_kind() -> None:
    imu = reading_pb2.Reading(
        sensor="imu", sample_time=_at(1_700_000_000),
        imu=reading_pb2.ImuPayload(acceleration_z_mps2=9.80665, angular_rate_x_dps=0.5),
    )  # fmt: skip
    air = reading_pb2.Reading(
        sensor="air",
        sample_time=_at(1_700_000_001),
        environment=reading_pb2.EnvironmentPayload(temperature_celsius=21.5),
    )
    soil = reading_pb2.Reading(
        sensor="soil", sample_time=_at(1_700_000_002),
        measurement=reading_pb2.Measurement(name="soil_moisture", value=31.25, unit="%"),
    )  # fmt: skip
    assert len(values(imu)) == 6
    assert [v.quantity for v in values(air)] == ["temperature"]  # humidity and pressure absent, not 0
    assert line(soil) == "2023-11-14T22:13:22.000Z soil soil_moisture=31.25 %"
    assert line(imu, frozenset({"acceleration_z"})).endswith("imu acceleration_z=9.80665 m/s2")

    view = DeviceView("pi", "127.0.0.1:8080")
    view.add([imu, air, soil], missed=3, now=100.0)
    view.add([air], missed=0, now=101.0)
    rows = {(r[0], r[1]): r for r in view.rows(now=101.0)}
    assert len(rows) == 8 and view.readings == 4 and view.missed == 3
    assert rows["air", "temperature"][2:5] == ["21.5", "Cel", "2023-11-14T22:13:21.000Z"]
    assert rows["air", "temperature"][5] == "1.0"  # two arrivals one second apart
    assert "3 missed" in view.title()
