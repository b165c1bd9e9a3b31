"""The migrations build the schema, are idempotent, and downgrade cleanly."""

from __future__ import annotations

import asyncpg
import pytest

from sensormesh_core.storage import migrate
from sensormesh_core.storage.rollup_sql import rollup_columns
from sensormesh_core.storage.schema import (
    LINK_HEALTH,
    MEASUREMENT_COLUMNS,
    MEASUREMENTS_TABLE,
    READING_TABLES,
    ROLLUP_SOURCES,
    ROLLUP_WIDTHS,
    TYPED_TABLES,
    SqlType,
)
from tests.support.schema import HEAD_REVISION

pytestmark = pytest.mark.storage

BEFORE_LINK_HEALTH = "0006"  # the revision link_health_readings (0007) follows
BEFORE_FRAMES = "0007"  # the revision the frame tables (0008) follow
BEFORE_ALERTS = "0008"  # the revision the alert tables (0009) follow

REGISTRY_TABLES = {
    "sensormesh_meta",
    "devices",
    "upload_offsets",
    "sensors",
    "series",
    "latest_values",
    "dead_letters",
    "thinning_reports",
    "device_inputs",
}


ACCESS_TABLES = {"api_keys", "audit_events", "retired_device_ids"}  # revision 0004
COMMAND_TABLES = {"commands", "device_commands"}  # revision 0006
# Revision 0007 (its rollups are tables on plain PostgreSQL, views on TimescaleDB).
LINK_HEALTH_TABLES = {LINK_HEALTH.table} | {LINK_HEALTH.rollup(w) for w in ROLLUP_WIDTHS}
FRAME_TABLES = {
    "frames",
    "frame_blobs",
    "frame_offsets",
    "cameras",
    "frame_thinning_reports",
}  # revision 0008
ALERT_TABLES = {
    "alert_rules",
    "alerts",
    "alert_cursors",
    "alert_series_states",
    "alert_leader",
    "alert_notifications",
}  # revision 0009

ROLLUP_TABLES = {s.rollup(w) for s in ROLLUP_SOURCES for w in ROLLUP_WIDTHS} | {
    "rollup_watermarks",
    "rollup_invalidations",
}


async def _backend_tables(url: str) -> set[str]:
    """Tables of revision 0002 and later: readings, (plain PostgreSQL) the rollups of 0003, access,
    commands, frames, alerts."""
    conn = await asyncpg.connect(url)
    try:
        has_timescale = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    finally:
        await conn.close()
    return (
        set(READING_TABLES)
        | (set() if has_timescale else ROLLUP_TABLES)
        | ACCESS_TABLES
        | COMMAND_TABLES
        | FRAME_TABLES
        | ALERT_TABLES
    )


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
    finally:
        await conn.close()
    return {r["relname"] for r in rows} - {"alembic_version"}


async def test_upgrade_creates_every_table(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)

    assert migrate.current_revision(empty_database_url) == HEAD_REVISION
    assert await _tables(empty_database_url) == REGISTRY_TABLES | await _backend_tables(empty_database_url)


async def test_migrating_twice_is_harmless(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("INSERT INTO devices (device_id, token_hash) VALUES ('pi-1', '\\x01')")
        migrate.upgrade(empty_database_url)
        assert await conn.fetchval("SELECT count(*) FROM devices") == 1
    finally:
        await conn.close()
    assert migrate.current_revision(empty_database_url) == HEAD_REVISION


async def test_downgrade_removes_everything_and_upgrade_restores_it(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    every_table = REGISTRY_TABLES | await _backend_tables(empty_database_url)

    migrate.downgrade(empty_database_url, BEFORE_ALERTS)
    every_table -= ALERT_TABLES
    assert await _tables(empty_database_url) == every_table
    migrate.downgrade(empty_database_url, BEFORE_FRAMES)
    every_table -= FRAME_TABLES
    assert await _tables(empty_database_url) == every_table
    migrate.downgrade(empty_database_url, BEFORE_LINK_HEALTH)
    every_table -= LINK_HEALTH_TABLES
    assert await _tables(empty_database_url) == every_table
    migrate.downgrade(empty_database_url, "0005")
    assert await _tables(empty_database_url) == every_table - COMMAND_TABLES
    migrate.downgrade(empty_database_url, "0004")  # 0005 changed how rollups sum, not which tables exist
    assert await _tables(empty_database_url) == every_table - COMMAND_TABLES
    migrate.downgrade(empty_database_url, "0003")
    assert await _tables(empty_database_url) == every_table - COMMAND_TABLES - ACCESS_TABLES
    migrate.downgrade(empty_database_url, "0002")
    assert await _tables(empty_database_url) == REGISTRY_TABLES | set(READING_TABLES) - LINK_HEALTH_TABLES
    migrate.downgrade(empty_database_url, "0001")
    assert await _tables(empty_database_url) == REGISTRY_TABLES
    migrate.downgrade(empty_database_url, "base")
    assert await _tables(empty_database_url) == set()
    assert migrate.current_revision(empty_database_url) is None

    migrate.upgrade(empty_database_url)
    assert await _tables(empty_database_url) == every_table | FRAME_TABLES | ALERT_TABLES | (
        LINK_HEALTH_TABLES & await _backend_tables(empty_database_url)
    )


async def test_reading_tables_match_the_schema_module(db: asyncpg.Connection) -> None:
    """Ingest and query take column names from schema.py; the migration must agree."""
    for table in TYPED_TABLES:
        rows = await db.fetch(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = $1 ORDER BY ordinal_position",
            table.table,
        )
        assert tuple(r["column_name"] for r in rows) == table.columns
        by_name = {r["column_name"]: r for r in rows}
        for quantity in table.quantities:
            assert by_name[quantity.name]["data_type"] == quantity.sql_type.value
            assert (by_name[quantity.name]["is_nullable"] == "NO") == quantity.required
    rows = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        MEASUREMENTS_TABLE,
    )
    assert tuple(r["column_name"] for r in rows) == MEASUREMENT_COLUMNS


# What a rollup's sum of each column type is, on both backends: a `real` summed in `real`
# loses 0.39 % over an hour at 100 Hz (migration 0005).
SUM_TYPES = {SqlType.REAL: "double precision", SqlType.DOUBLE: "double precision", SqlType.BIGINT: "numeric"}


async def test_rollups_have_the_same_columns_and_sum_types_on_either_backend(db: asyncpg.Connection) -> None:
    """Tables of the refresher on plain PostgreSQL, continuous aggregates on TimescaleDB:
    the query service reads both with the same SQL, so names and types must agree."""
    for source in ROLLUP_SOURCES:
        for width in ROLLUP_WIDTHS:
            rows = await db.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = $1 ORDER BY ordinal_position",
                source.rollup(width),
            )
            assert [r["column_name"] for r in rows] == rollup_columns(source), source.rollup(width)
            types = {r["column_name"]: r["data_type"] for r in rows}
            for column, sql_type in source.columns:
                assert types[f"{column}_sum"] == SUM_TYPES[sql_type], (source.rollup(width), column)
                assert types[f"{column}_min"] == types[f"{column}_max"] == sql_type.value
                assert types[f"{column}_count"] == "bigint"


async def test_backend_is_recorded(db: asyncpg.Connection) -> None:
    has_timescale = await db.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    backend = await db.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'")
    assert backend == ("timescaledb" if has_timescale else "partitioned")


async def test_device_id_format_is_enforced_by_the_database(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO devices (device_id, token_hash) VALUES ('Bad_Id', '\\x01')")


async def test_link_health_revision_keeps_earlier_generic_series_and_every_partition_day(
    empty_database_url: str,
) -> None:
    """A generic measurement named like a link-health quantity before 0007 is renamed with its
    rows (else reads of the name would go to the new table); on plain PostgreSQL the new table
    gets a partition for every day the others have, as ingest expects of a day."""
    migrate.upgrade(empty_database_url, BEFORE_LINK_HEALTH)
    conn = await asyncpg.connect(empty_database_url)
    try:
        partitioned = (
            await conn.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'") == "partitioned"
        )
        if partitioned:
            for table in ("imu_readings", "environment_readings", "system_readings", "measurements"):
                await conn.execute(
                    f"CREATE TABLE {table}_p20260301 PARTITION OF {table} "
                    "FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-03-02 00:00:00+00')"
                )
        await conn.execute("INSERT INTO devices (device_id, token_hash) VALUES ('pi-1', '\\x01')")
        sensor = await conn.fetchval(
            "INSERT INTO sensors (device_id, name) VALUES ('pi-1', 'mqtt:a') RETURNING sensor_id"
        )
        series = await conn.fetchval(
            "INSERT INTO series (sensor_id, quantity, unit) VALUES ($1, 'battery_level', '%') RETURNING series_id",
            sensor,
        )
        await conn.execute(
            "INSERT INTO measurements (time, sequence, series_id, value) VALUES ('2026-03-01T12:00:00Z', 1, $1, 87)",
            series,
        )

        migrate.upgrade(empty_database_url)
        assert await conn.fetchval("SELECT quantity FROM series WHERE series_id = $1", series) == (
            "battery_level.generic"
        )
        assert await conn.fetchval("SELECT value FROM measurements WHERE series_id = $1", series) == 87
        if partitioned:
            assert await conn.fetchval("SELECT to_regclass('link_health_readings_p20260301') IS NOT NULL")

        migrate.downgrade(empty_database_url, BEFORE_LINK_HEALTH)
        assert (
            await conn.fetchval("SELECT quantity FROM series WHERE series_id = $1", series) == "battery_level"
        )
    finally:
        await conn.close()
