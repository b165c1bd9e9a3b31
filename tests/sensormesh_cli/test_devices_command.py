"""`sensormesh devices` against a real query service (and ingest, to prove the token works)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from sensormesh_cli.main import main
from tests.sensormesh_cli.conftest import Services

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


def _devices(services: Services, *args: str) -> list[str]:
    return ["devices", *args, "--server", services.query, "--api-key-file", str(services.admin_key_file)]


def test_create_writes_a_private_token_file_that_authenticates_with_ingest(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "pi.token"
    argv = _devices(services, "create", "cmd-pi-1", "--label", "site=lab", "--token-file", str(token_file))
    assert main(argv) == 0
    token = token_file.read_text().strip()
    assert token in capsys.readouterr().out
    assert token_file.stat().st_mode & 0o777 == 0o600
    with grpc.insecure_channel(services.ingest) as channel:
        offset = ingest_pb2_grpc.IngestServiceStub(channel).GetUploadOffset(
            ingest_pb2.GetUploadOffsetRequest(device_id="cmd-pi-1"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    assert offset.committed_sequence == 0


def test_list_get_update_and_delete_round_trip(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_devices(services, "create", "cmd-pi-2", "--type", "direct", "--display-name", "Two")) == 0
    capsys.readouterr()

    assert main(_devices(services, "list", "--type", "direct")) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[0].split() == [
        "DEVICE",
        "TYPE",
        "STATUS",
        "LAST",
        "UPLOAD",
        "SEQUENCE",
        "BATTERY",
        "SIGNAL",
        "NAME",
    ]
    assert any(line.split()[:3] == ["cmd-pi-2", "direct", "active"] for line in listed.splitlines())

    assert main(_devices(services, "update", "cmd-pi-2", "--status", "disabled", "--label", "room=b2")) == 0
    updated = capsys.readouterr().out
    assert "status        disabled" in updated and "labels        room=b2" in updated
    assert "name          Two" in updated  # not in the mask: unchanged

    assert main(_devices(services, "get", "cmd-pi-2", "--json")) == 0
    device = json.loads(capsys.readouterr().out)
    assert device["status"] == "DEVICE_STATUS_DISABLED" and device["labels"] == {"room": "b2"}

    assert main(_devices(services, "delete", "cmd-pi-2", "--yes")) == 0
    assert "deleted with 0 readings" in capsys.readouterr().out
    assert main(_devices(services, "get", "cmd-pi-2")) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_bad_input_is_answered_with_the_field(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_devices(services, "create", "Bad_Id")) == 1
    error = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in error and "device.device_id:" in error
    assert main(_devices(services, "update", "cmd-pi-3")) == 2
    assert "nothing to update" in capsys.readouterr().err


def test_delete_without_yes_off_a_terminal_deletes_nothing(services: Services) -> None:
    assert main(_devices(services, "create", "cmd-pi-4")) == 0
    result = subprocess.run(
        [sys.executable, "-m", "sensormesh_cli", *_devices(services, "delete", "cmd-pi-4")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 1 and "--yes" in result.stderr
    assert main(_devices(services, "get", "cmd-pi-4")) == 0


def test_a_call_without_an_api_key_is_refused_and_says_where_a_key_goes(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SENSORMESH_API_KEY", raising=False)
    argv = ["devices", "list", "--server", services.query, "--api-key-file", str(tmp_path / "absent.key")]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "UNAUTHENTICATED" in error and "SENSORMESH_API_KEY" in error and "--api-key-file" in error


def test_an_unreachable_server_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.ports import free_port

    server = f"127.0.0.1:{free_port()}"
    assert main(["devices", "list", "--server", server]) == 1
    assert f"cannot reach {server}" in capsys.readouterr().err


def _write_link_health(services: Services, device_id: str, token: str, battery: float, rssi: float) -> None:
    reading = reading_pb2.Reading(
        sensor="ble:tag",
        link_health=reading_pb2.LinkHealthPayload(battery_level_percent=battery, signal_strength_dbm=rssi),
    )
    reading.sample_time.GetCurrentTime()
    with grpc.insecure_channel(services.ingest) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=device_id, readings=[reading]),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def test_list_shows_and_sorts_by_each_devices_lowest_battery_and_weakest_signal(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for device_id, battery, rssi in (("bat-pi-1", 64.5, -58), ("bat-pi-2", 17.0, -93)):
        token_file = tmp_path / f"{device_id}.token"
        assert main(_devices(services, "create", device_id, "--token-file", str(token_file))) == 0
        _write_link_health(services, device_id, token_file.read_text().strip(), battery, rssi)
    capsys.readouterr()

    assert main(_devices(services, "list", "--order-by", "battery")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[6:9] == ["BATTERY", "SIGNAL", "NAME"]
    ours = [line.split() for line in lines if line.startswith("bat-pi-")]
    assert [(row[0], row[6:10]) for row in ours] == [
        ("bat-pi-2", ["17", "%", "-93", "dBm"]),
        ("bat-pi-1", ["64.5", "%", "-58", "dBm"]),
    ]
    assert main(_devices(services, "get", "bat-pi-2")) == 0
    shown = capsys.readouterr().out
    assert "battery       17 %, lowest of its sensors (ble:tag," in shown
    assert "signal        -93 dBm, weakest of its sensors (ble:tag," in shown
