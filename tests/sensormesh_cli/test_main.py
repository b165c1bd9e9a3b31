"""`sensormesh db`, and `sensormesh devices create --database-url` (bootstrap), against a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

from sensormesh_cli.main import main
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.schema import READING_TABLES, ROLLUP_WIDTHS
from sensormesh_core.storage.timescaledb_probe import PROBE_SQL, ExtensionState, state_of
from sensormesh_core.tokens import hash_token
from tests.support.reading_writer import ReadingWriter, environment
from tests.support.schema import HEAD_REVISION

pytestmark = pytest.mark.storage


def test_db_migrate_then_current(empty_database_url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", empty_database_url)
    assert main(["db", "migrate"]) == 0
    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert f"schema at revision {HEAD_REVISION}" in out
    assert out.strip().endswith(HEAD_REVISION)


@pytest.mark.partitioned_only
def test_db_migrate_requiring_timescaledb_where_there_is_none_says_so(  # type: ignore[no-untyped-def]
    empty_database_url: str, monkeypatch, capsys
) -> None:
    with psycopg.connect(empty_database_url) as conn:
        state = state_of(*(conn.execute(PROBE_SQL).fetchone() or (False, False, False)))
    # A server may carry the extension's files without preloading them (CI's has, at times):
    # then the refusal names the setting to change instead.
    expected = {
        ExtensionState.ABSENT: "SENSORMESH_TIMESCALEDB=require but the server has no timescaledb extension",
        ExtensionState.NOT_PRELOADED: "SENSORMESH_TIMESCALEDB=require but the server does not preload "
        "timescaledb: add timescaledb to shared_preload_libraries",
    }[state]
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", empty_database_url)
    assert main(["db", "migrate", "--timescaledb", "require"]) == 1
    assert expected in capsys.readouterr().err
    with psycopg.connect(empty_database_url) as conn:  # nothing half-made
        assert conn.execute("SELECT to_regclass('sensormesh_meta')").fetchone() == (None,)


@pytest.mark.partitioned_only
def test_db_refresh_rollups_catches_up(database_url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", database_url)
    assert main(["db", "refresh-rollups"]) == 0
    assert "minute_rows=" in capsys.readouterr().out
    with psycopg.connect(database_url) as conn:
        marks = conn.execute("SELECT count(*) FROM rollup_watermarks WHERE watermark IS NULL").fetchone()
        assert marks == (0,)


@pytest.mark.timescaledb_only
def test_db_refresh_rollups_refreshes_every_continuous_aggregate(
    database_url: str, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)

    async def write() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await create_device(conn, "pi-1")
            await ReadingWriter(conn).write(
                "pi-1", [environment("bme280", ten_minutes_ago, 21.5)], notify=False
            )
        finally:
            await conn.close()

    asyncio.run(write())
    monkeypatch.setenv("SENSORMESH_DATABASE_URL", database_url)
    assert main(["db", "refresh-rollups"]) == 0
    refreshed = [
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("refreshed=")
    ]
    assert refreshed == [f"refreshed={t}_{w}" for w in ROLLUP_WIDTHS for t in READING_TABLES]  # 1m before 1h
    with psycopg.connect(database_url, autocommit=True) as conn:
        # What is materialized, not what real-time aggregation adds from the raw rows.
        conn.execute(
            "ALTER MATERIALIZED VIEW environment_readings_1m SET (timescaledb.materialized_only = true)"
        )
        row = conn.execute(
            "SELECT temperature_count, temperature_sum FROM environment_readings_1m"
        ).fetchone()
        assert row == (1, 21.5)


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
