"""The TimescaleDB branch of the schema, and how the migrations decide whether to take it.

CI's servers (the embedded PostgreSQL, Debian's PostgreSQL 15) have no TimescaleDB, so the
tests marked `timescaledb_only` skip there, saying so; the README's "Testing against
TimescaleDB" says how to run them against a server that has it (they were run against
TimescaleDB 2.29.1 on PostgreSQL 18.6 and 2.28.3 on PostgreSQL 15.20).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings, TimescaleMode
from sensormesh_core.storage import continuous_aggregates, maintenance, migrate
from sensormesh_core.storage.continuous_aggregates import refresh_continuous_aggregates
from sensormesh_core.storage.maintenance import Backend, maintain
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.schema import FRAME_TABLES, LINK_HEALTH, READING_TABLES, ROLLUP_WIDTHS
from sensormesh_core.storage.time_buckets import HOUR, floor_to
from sensormesh_core.storage.timescaledb_probe import (
    PROBE_SQL,
    ExtensionState,
    TimescaleUnavailable,
    state_of,
    use_timescaledb,
)
from tests.support.reading_writer import ReadingWriter, imu

# (installed, available, preloaded) -> state
STATES = [
    ((False, False, False), ExtensionState.ABSENT),
    ((False, True, False), ExtensionState.NOT_PRELOADED),
    ((False, True, True), ExtensionState.READY),
    ((True, True, True), ExtensionState.READY),
]


@pytest.mark.parametrize(("row", "state"), STATES, ids=[s.name for _, s in STATES])
def test_the_probe_row_gives_the_state(row: tuple[bool, bool, bool], state: ExtensionState) -> None:
    assert state_of(*row) is state


def test_a_database_using_timescaledb_on_a_server_not_preloading_it_is_refused_in_every_mode() -> None:
    with pytest.raises(TimescaleUnavailable, match="shared_preload_libraries"):
        state_of(installed=True, available=True, preloaded=False)


@pytest.mark.parametrize(
    ("mode", "state", "uses"),
    [
        (TimescaleMode.AUTO, ExtensionState.ABSENT, False),
        (TimescaleMode.AUTO, ExtensionState.NOT_PRELOADED, False),
        (TimescaleMode.AUTO, ExtensionState.READY, True),
        (TimescaleMode.REQUIRE, ExtensionState.READY, True),
        (TimescaleMode.OFF, ExtensionState.ABSENT, False),
        (TimescaleMode.OFF, ExtensionState.NOT_PRELOADED, False),
        (TimescaleMode.OFF, ExtensionState.READY, False),
    ],
)
def test_the_mode_and_the_state_decide_the_backend(
    mode: TimescaleMode, state: ExtensionState, uses: bool
) -> None:
    assert use_timescaledb(mode, state) is uses


def test_auto_falls_back_with_a_warning_when_the_extension_is_not_preloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert use_timescaledb(TimescaleMode.AUTO, ExtensionState.NOT_PRELOADED) is False
    assert "timescaledb_not_preloaded" in caplog.text and "shared_preload_libraries" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        use_timescaledb(TimescaleMode.AUTO, ExtensionState.ABSENT)
    assert not caplog.text  # nothing to warn about on a server without the extension


@pytest.mark.parametrize(
    ("state", "names"),
    [
        (ExtensionState.ABSENT, "no timescaledb extension"),
        (ExtensionState.NOT_PRELOADED, "SENSORMESH_TIMESCALEDB=require.*shared_preload_libraries"),
    ],
)
def test_require_fails_naming_the_setting_and_what_to_change(state: ExtensionState, names: str) -> None:
    with pytest.raises(TimescaleUnavailable, match=names):
        use_timescaledb(TimescaleMode.REQUIRE, state)


@pytest.mark.storage
async def test_the_probe_on_this_server_agrees_with_the_backend_chosen(
    empty_database_url: str, storage_backend: Backend
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        state = state_of(*await conn.fetchrow(PROBE_SQL))
    finally:
        await conn.close()
    assert (state is ExtensionState.READY) == (storage_backend is Backend.TIMESCALEDB)


@pytest.mark.storage
@pytest.mark.partitioned_only
async def test_require_on_this_server_fails_clearly(empty_database_url: str) -> None:
    with pytest.raises(TimescaleUnavailable, match="SENSORMESH_TIMESCALEDB=require"):
        migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.REQUIRE)


@pytest.mark.storage
async def test_off_uses_partitioning_even_with_the_extension(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.OFF)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'") == "partitioned"
        kinds = await conn.fetch(
            "SELECT relkind FROM pg_class WHERE relname = ANY($1::text[])", list(READING_TABLES)
        )
        assert {k["relkind"] for k in kinds} == {b"p"}
        assert not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    finally:
        await conn.close()


@pytest.mark.storage
@pytest.mark.timescaledb_only
async def test_hypertables_rollups_and_policies(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.REQUIRE)
    conn = await asyncpg.connect(empty_database_url)
    try:
        hypertables = {
            r["hypertable_name"]
            for r in await conn.fetch("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert set(READING_TABLES) | set(FRAME_TABLES) <= hypertables
        views = {
            r["view_name"]
            for r in await conn.fetch("SELECT view_name FROM timescaledb_information.continuous_aggregates")
        }
        rollups = {f"{t}_{w}" for t in READING_TABLES for w in ROLLUP_WIDTHS}
        assert rollups == views
        report = await maintain(conn, StorageSettings(), apply_policies=True)
        assert len(report.policies_applied) == len(READING_TABLES) * 6 + len(FRAME_TABLES)
        # Ours only: TimescaleDB keeps jobs of its own (telemetry, job history retention).
        jobs = await conn.fetch(
            "SELECT hypertable_name, proc_name, config->>'start_offset' AS start_offset "
            "FROM timescaledb_information.jobs WHERE hypertable_name = ANY($1::text[])",
            [*READING_TABLES, *rollups],
        )
        assert len(jobs) == len(READING_TABLES) * 6
        by_table = {(j["hypertable_name"], j["proc_name"]) for j in jobs}
        for table in READING_TABLES:
            assert {(table, "policy_retention"), (table, "policy_compression")} <= by_table
        for view in rollups:
            assert {(view, "policy_retention"), (view, "policy_refresh_continuous_aggregate")} <= by_table
        starts = {j["start_offset"] for j in jobs if j["proc_name"] == "policy_refresh_continuous_aggregate"}
        assert starts == {"29 days"}  # back to a day inside the 30-day raw retention
    finally:
        await conn.close()


# The reading tables a database at revision 0005 has: later revisions add their own.
TABLES_AT_0005 = tuple(t for t in READING_TABLES if t != LINK_HEALTH.table)


@pytest.fixture
def tables_at_0005(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maintenance and refreshes of a database migrated only to 0004 or 0005 see its tables."""
    monkeypatch.setattr(maintenance, "READING_TABLES", TABLES_AT_0005)
    monkeypatch.setattr(continuous_aggregates, "READING_TABLES", TABLES_AT_0005)


@pytest.mark.storage
@pytest.mark.timescaledb_only
@pytest.mark.usefixtures("tables_at_0005")
async def test_migration_0005_rebuilds_the_aggregates_keeping_their_policies(empty_database_url: str) -> None:
    """An existing database at 0004, with policies applied, upgraded: every aggregate is rebuilt
    with double-precision sums and keeps its refresh and retention policies as they were."""
    migrate.upgrade(empty_database_url, "0004", timescaledb=TimescaleMode.REQUIRE)
    policies_sql = (
        "SELECT hypertable_name, proc_name, schedule_interval, "
        "config - 'mat_hypertable_id' - 'hypertable_id' AS config FROM timescaledb_information.jobs "
        "WHERE hypertable_name LIKE '%\\_1_' ORDER BY 1, 2"
    )
    sum_type_sql = (
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'imu_readings_1h' AND column_name = 'acceleration_z_sum'"
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        await maintain(conn, StorageSettings(), apply_policies=True)
        before = [tuple(r) for r in await conn.fetch(policies_sql)]
        assert await conn.fetchval(sum_type_sql) == "real"  # the single-precision sums of 0002
    finally:
        await conn.close()

    migrate.upgrade(empty_database_url)

    conn = await asyncpg.connect(empty_database_url)
    try:
        assert [tuple(r) for r in await conn.fetch(policies_sql)] == before
        assert len(before) == len(TABLES_AT_0005) * len(ROLLUP_WIDTHS) * 2
        assert await conn.fetchval(sum_type_sql) == "double precision"
    finally:
        await conn.close()
    migrate.downgrade(empty_database_url, "0004")
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval(sum_type_sql) == "real"
        assert [tuple(r) for r in await conn.fetch(policies_sql)] == before
    finally:
        await conn.close()


@pytest.mark.storage
@pytest.mark.timescaledb_only
@pytest.mark.usefixtures("tables_at_0005")
async def test_migration_0005_on_a_database_with_history_rebuilds_what_the_raw_rows_hold(
    empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rollups made at 0004 from readings since dropped cannot be rebuilt: the migration says how
    many 1-hour buckets go; what the raw rows still hold comes back, summed in double."""
    migrate.upgrade(empty_database_url, "0004", timescaledb=TimescaleMode.REQUIRE)
    start = floor_to(datetime.now(UTC) - timedelta(hours=6), HOUR)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await create_device(conn, "pi-1")
        readings = [imu("mpu", start + timedelta(seconds=s), az=9.80665) for s in range(0, 5 * 3600, 2)]
        await ReadingWriter(conn).write("pi-1", readings, notify=False)
        await refresh_continuous_aggregates(conn, StorageSettings())
        assert await conn.fetchval("SELECT count(*) FROM imu_readings_1h") == 5
        # The oldest two hours leave the raw table (as retention would drop them).
        await conn.execute("DELETE FROM imu_readings WHERE time < $1", start + 2 * HOUR)
    finally:
        await conn.close()

    with caplog.at_level(logging.WARNING):
        migrate.upgrade(empty_database_url)
    assert "event=rollup_history_dropped rollup=imu_readings_1h buckets=2" in caplog.text

    conn = await asyncpg.connect(empty_database_url)
    try:
        await refresh_continuous_aggregates(conn, StorageSettings())
        await conn.execute(
            "ALTER MATERIALIZED VIEW imu_readings_1h SET (timescaledb.materialized_only = true)"
        )
        rows = await conn.fetch(
            "SELECT bucket, acceleration_z_count, acceleration_z_sum FROM imu_readings_1h ORDER BY bucket"
        )
        expected = await conn.fetch(
            "SELECT date_bin('1 hour', time, 'epoch'::timestamptz), count(*), sum(acceleration_z::float8) "
            "FROM imu_readings GROUP BY 1 ORDER BY 1"
        )
        assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
        assert [r[0] for r in rows] == [start + h * HOUR for h in (2, 3, 4)]
    finally:
        await conn.close()
