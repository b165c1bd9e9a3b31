"""`sensormesh db`, and `sensormesh devices create --database-url` (bootstrap), against a real database."""

from __future__ import annotations

import psycopg
import pytest

from sensormesh_cli.main import main
from sensormesh_core.tokens import hash_token

pytestmark = pytest.mark.storage


def test_db_migrate_then_current(empty_database_url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", empty_database_url)
    assert main(["db", "migrate"]) == 0
    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert "schema at revision 0004" in out
    assert out.strip().endswith("0004")


def test_db_refresh_rollups_catches_up(database_url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", database_url)
    assert main(["db", "refresh-rollups"]) == 0
    assert "minute_rows=" in capsys.readouterr().out
    with psycopg.connect(database_url) as conn:
        marks = conn.execute("SELECT count(*) FROM rollup_watermarks WHERE watermark IS NULL").fetchone()
        assert marks == (0,)


def test_devices_create_with_database_url_writes_the_registry_directly(database_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    bootstrap = ["--database-url", database_url]
    assert main(["devices", "create", "greenhouse-pi-1", "--display-name", "Greenhouse", *bootstrap]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT device_id, display_name FROM devices WHERE token_hash = %s", (hash_token(token),)
        ).fetchone()
        assert row == ("greenhouse-pi-1", "Greenhouse")
        assert conn.execute("SELECT committed_sequence FROM upload_offsets").fetchone() == (0,)

    assert main(["devices", "create", "greenhouse-pi-1", *bootstrap]) == 1
    assert "already exists" in capsys.readouterr().err


def test_devices_create_with_database_url_refuses_a_bad_id(database_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["devices", "create", "Not_A_DNS_Label", "--database-url", database_url]) == 1
    assert "device_id" in capsys.readouterr().err
