"""`sensormesh keys` and `sensormesh audit` against a real query service, and the
bootstrap path straight into the database."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import device_pb2, device_pb2_grpc

from sensormesh_cli.keys_command import parse_duration
from sensormesh_cli.main import main
from tests.sensormesh_cli.conftest import Services

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


def _client(services: Services) -> list[str]:
    return ["--server", services.query, "--api-key-file", str(services.admin_key_file)]


def _devices_with(services: Services, key: str) -> list[str]:
    with grpc.insecure_channel(services.query) as channel:
        response = device_pb2_grpc.DeviceServiceStub(channel).ListDevices(
            device_pb2.ListDevicesRequest(), metadata=(("authorization", f"Bearer {key}"),), timeout=10
        )
    return [d.device_id for d in response.devices]


def test_create_list_revoke_round_trip(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "grafana.key"
    argv = ["keys", "create", "cli-grafana", "--role", "viewer", "--devices", "site=lab", "--expires", "90d"]
    assert main([*argv, "--key-file", str(key_file), *_client(services)]) == 0
    out = capsys.readouterr().out
    key = key_file.read_text().strip()
    assert key.startswith("smak_") and key in out and "viewer, site=lab" in out
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert _devices_with(services, key) == []  # no device has site=lab yet

    assert main(["keys", "list", "--json", *_client(services)]) == 0
    listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)["apiKeys"]}
    assert listed["cli-grafana"]["role"] == "ROLE_VIEWER"
    assert listed["cli-grafana"]["deviceScope"] == {"labels": {"site": "lab"}}
    assert key not in json.dumps(listed)

    assert main(["keys", "revoke", "cli-grafana", *_client(services)]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", *_client(services)]) == 0
    assert "cli-grafana" not in capsys.readouterr().out  # revoked keys only with --all
    assert main(["keys", "list", "--all", *_client(services)]) == 0
    assert "cli-grafana" in capsys.readouterr().out


def test_bootstrap_creates_an_admin_key_straight_in_the_database(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "create", "cli-first-admin", "--role", "admin", "--database-url", services.database_url]
    assert main(argv) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("smak_")
    assert isinstance(_devices_with(services, key), list)  # the service accepts it


def test_audit_shows_the_changes_with_who_made_them(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "cli-audited", "--role", "viewer", *_client(services)]) == 0
    capsys.readouterr()
    assert main(["audit", "--actor", "key:cli-tests-admin", "--json", *_client(services)]) == 0
    events = json.loads(capsys.readouterr().out)["auditEvents"]
    assert any(
        e["method"] == "sensormesh.v1.AccessService/CreateApiKey" and e["resource"] == "apiKeys/cli-audited"
        for e in events
    )


def test_a_missing_key_is_explained(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "list", "--server", services.query, "--api-key-file", str(tmp_path / "none")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "SENSORMESH_API_KEY" in err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("P2D", 172800)]
)
def test_durations_read_as_people_write_them(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_a_bad_duration_names_the_flag() -> None:
    with pytest.raises(ValueError, match="--expires"):
        parse_duration("soon")
