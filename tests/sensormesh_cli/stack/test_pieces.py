"""The local stack's pieces on their own: preflight checks, the agents' configs, the watch view."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import reading_pb2

from gateway_agent.config import AgentSettings, build_inputs
from sensormesh_cli.stack import demo
from sensormesh_cli.stack.examples import Endpoints, default_paths, display_path, reachable, render
from sensormesh_cli.stack.local_ca import RENEW_BEFORE, SERVER_VALIDITY, ensure_local_tls
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
    assert len(build_inputs(settings.inputs)) == sum(len(tables) for tables in device.inputs.values())


def test_with_a_ca_the_agent_config_asks_for_tls_verified_against_it(tmp_path: Path) -> None:
    token = tmp_path / "t.token"
    token.write_text("smdt_x\n")
    (gateway,) = [d for d in demo.DEMO_DEVICES if d.device_id == "greenhouse-pi"]
    path = demo.agent_config(
        gateway, token, "127.0.0.1:50051", tmp_path / "agents", ca_file=tmp_path / "ca.pem"
    )
    uplink = AgentSettings.load(path).uplink
    assert uplink.tls is True and uplink.ca_file == (tmp_path / "ca.pem").resolve()


def test_the_local_ca_is_made_once_with_private_keys_and_reused(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path)
    assert tls.folder.stat().st_mode & 0o777 == 0o700
    assert [p.stat().st_mode & 0o777 for p in (tls.ca_key, tls.server_key)] == [0o600, 0o600]
    files = {p: p.read_bytes() for p in (tls.ca_cert, tls.ca_key, tls.server_cert, tls.server_key)}
    ensure_local_tls(tmp_path)
    assert {p: p.read_bytes() for p in files} == files, "a later start reuses every file"

    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_a_server_certificate_near_its_end_is_issued_again_by_the_same_ca(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path)
    ca, first = tls.ca_cert.read_bytes(), tls.server_cert.read_bytes()
    later = datetime.now(UTC) + SERVER_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    ensure_local_tls(tmp_path, now=later)
    assert tls.ca_cert.read_bytes() == ca and tls.server_cert.read_bytes() != first
    tls.ca_key.write_text("not a key")  # a broken CA is made again, and with it the certificate
    ensure_local_tls(tmp_path)
    assert tls.ca_cert.read_bytes() != ca


def test_with_tls_the_printed_commands_use_https_and_the_ca(tmp_path: Path) -> None:
    paths = default_paths(tmp_path / ".sensormesh", cwd=tmp_path, tls=True)
    text = render(Endpoints(), paths)
    assert "http://" not in text and "--http2-prior-knowledge" not in text
    assert (
        'curl --cacert .sensormesh/tls/ca.pem -s -H "authorization: Bearer $(cat .sensormesh/admin.key)" https://127.0.0.1:8080/v1/devices'
        in text
    )
    assert "--ca-file .sensormesh/tls/ca.pem" in text


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
