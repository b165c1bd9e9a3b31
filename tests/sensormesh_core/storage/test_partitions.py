"""Plain-PostgreSQL partitions: created ahead and on demand, dropped by retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.maintenance import Backend, maintain, storage_backend
from sensormesh_core.storage.partitions import PartitionManager, days_between, partition_name
from sensormesh_core.storage.schema import FRAME_TABLES, READING_TABLES

pytestmark = pytest.mark.storage


@pytest.fixture
async def partitioned(db: asyncpg.Connection) -> asyncpg.Connection:
    """A database on the plain-PostgreSQL backend (TimescaleDB makes chunks itself)."""
    assert await storage_backend(db) is Backend.PARTITIONED
    return db


async def _partitions(db: asyncpg.Connection) -> set[str]:
    rows = await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
        [*READING_TABLES, *FRAME_TABLES],
    )
    return {r["relname"] for r in rows}


def test_days_between_spans_utc_days_inclusively() -> None:
    first = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert days_between(first, first + timedelta(minutes=2)) == [date(2026, 11, 22), date(2026, 11, 23)]
    assert days_between(first, first) == [date(2026, 11, 22)]


@pytest.mark.partitioned_only
async def test_maintenance_creates_days_ahead(partitioned: asyncpg.Connection) -> None:
    now = datetime(2030, 1, 10, 12, tzinfo=UTC)
    report = await maintain(partitioned, StorageSettings(partitions_ahead=2), now=now)

    names = await _partitions(partitioned)
    for day in (date(2030, 1, 9), date(2030, 1, 10), date(2030, 1, 11), date(2030, 1, 12)):
        for table in (*READING_TABLES, *FRAME_TABLES):
            assert partition_name(table, day) in names
    assert partition_name("imu_readings", date(2030, 1, 13)) not in names
    assert len(report.partitions_created) == 4 * (len(READING_TABLES) + len(FRAME_TABLES))


@pytest.mark.partitioned_only
async def test_rows_land_in_a_partition_created_on_demand(partitioned: asyncpg.Connection) -> None:
    old = datetime(2031, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(asyncpg.CheckViolationError):  # no partition for that day yet
        await partitioned.execute("INSERT INTO measurements VALUES ($1, 1, 1, 1.0)", old)
    manager = PartitionManager()
    await manager.load(partitioned)
    assert await manager.ensure(partitioned, days_between(old, old)) == [old.date()]
    assert await manager.ensure(partitioned, days_between(old, old)) == []  # cached: no DDL

    await partitioned.execute("INSERT INTO measurements VALUES ($1, 1, 1, 1.0)", old)
    assert (
        await partitioned.fetchval(f"SELECT count(*) FROM {partition_name('measurements', old.date())}") == 1
    )


@pytest.mark.partitioned_only
async def test_retention_drops_whole_days_past_the_cutoff(partitioned: asyncpg.Connection) -> None:
    now = datetime(2032, 6, 30, 12, tzinfo=UTC)
    manager = PartitionManager()
    await manager.ensure(partitioned, [date(2032, 6, 1), date(2032, 6, 19), date(2032, 6, 20)])

    await maintain(partitioned, StorageSettings(retention=timedelta(days=10)), manager, now=now)

    names = await _partitions(partitioned)
    assert partition_name("imu_readings", date(2032, 6, 1)) not in names
    assert (
        partition_name("imu_readings", date(2032, 6, 19)) not in names
    )  # ends 06-20 00:00, before cutoff 06-20 12:00
    assert (
        partition_name("imu_readings", date(2032, 6, 20)) in names
    )  # still holds rows newer than the cutoff
    assert partition_name("imu_readings", date(2032, 7, 1)) in names  # ahead


@pytest.mark.partitioned_only
async def test_two_managers_racing_create_each_partition_once(
    partitioned: asyncpg.Connection, database_url: str
) -> None:
    import asyncio

    other = await asyncpg.connect(database_url)
    try:
        day = date(2033, 2, 2)
        created = await asyncio.gather(
            PartitionManager().ensure(partitioned, [day]), PartitionManager().ensure(other, [day])
        )
    finally:
        await other.close()
    assert created == [[day], [day]]  # both asked; IF NOT EXISTS under the lock kept it to one table each
    assert partition_name("system_readings", day) in await _partitions(partitioned)
