"""The TimescaleDB branch of the schema, where the test server has the extension.

The embedded PostgreSQL and Debian's PostgreSQL 15 ship without TimescaleDB,
so on those these tests skip and say so; the SQL was reviewed against
TimescaleDB's documentation (create_hypertable with by_range, compression
segmentby/orderby, hierarchical continuous aggregates, policies).
"""

from __future__ import annotations

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings, TimescaleMode
from sensormesh_core.storage import migrate
from sensormesh_core.storage.maintenance import maintain
from sensormesh_core.storage.schema import READING_TABLES

pytestmark = pytest.mark.storage


async def _has_timescaledb(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
        )
    finally:
        await conn.close()


async def test_require_fails_clearly_without_the_extension(empty_database_url: str) -> None:
    if await _has_timescaledb(empty_database_url):
        pytest.skip("this server has TimescaleDB, so require succeeds (covered below)")
    with pytest.raises(RuntimeError, match="no timescaledb extension"):
        migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.REQUIRE)


async def test_off_uses_partitioning_even_with_the_extension(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.OFF)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'") == "partitioned"
        kinds = await conn.fetch(
            "SELECT relkind FROM pg_class WHERE relname = ANY($1::text[])", list(READING_TABLES)
        )
        assert {k["relkind"] for k in kinds} == {b"p"}
    finally:
        await conn.close()


async def test_hypertables_rollups_and_policies(empty_database_url: str) -> None:
    if not await _has_timescaledb(empty_database_url):
        pytest.skip("no timescaledb extension on this server (embedded and Debian PostgreSQL lack it)")
    migrate.upgrade(empty_database_url, timescaledb=TimescaleMode.REQUIRE)
    conn = await asyncpg.connect(empty_database_url)
    try:
        hypertables = {
            r["hypertable_name"]
            for r in await conn.fetch("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert set(READING_TABLES) <= hypertables
        views = {
            r["view_name"]
            for r in await conn.fetch("SELECT view_name FROM timescaledb_information.continuous_aggregates")
        }
        assert {f"{t}_{w}" for t in READING_TABLES for w in ("1m", "1h")} == views
        report = await maintain(conn, StorageSettings(), apply_policies=True)
        assert len(report.policies_applied) == len(READING_TABLES) * 6
        jobs = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy_%'"
        )
        assert jobs == len(READING_TABLES) * 6
        starts = {
            r["start_offset"]
            for r in await conn.fetch(
                "SELECT config->>'start_offset' AS start_offset FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_refresh_continuous_aggregate'"
            )
        }
        assert starts == {"29 days"}  # back to a day inside the 30-day raw retention
    finally:
        await conn.close()
