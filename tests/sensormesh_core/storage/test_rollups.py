"""The plain-PostgreSQL rollups: schema, refresher, late data, the writer/refresher
race, retention, deleted devices. Every check compares against the raw rows.

TimescaleDB keeps its continuous aggregates itself; what both backends must agree on
(columns, sums in double precision, the buckets served) is in test_backends_agree.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage import rollups
from sensormesh_core.storage.registry import create_device, delete_device
from sensormesh_core.storage.rollup_gate import GATE_CTE, GATE_LOCK_KEY, RECENT, late_ranges, record_late
from sensormesh_core.storage.rollups import RUN_LOCK_KEY, refresh_rollups
from sensormesh_core.storage.schema import ENVIRONMENT, ROLLUP_SOURCES
from sensormesh_core.storage.time_buckets import HOUR, MINUTE, floor_to
from tests.sensormesh_core.storage.rollup_checks import (
    assert_rollups_match_raw,
    raw_buckets,
    rollup_buckets,
    write_fleet,
)
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = [pytest.mark.storage, pytest.mark.partitioned_only]

# Three hours of data ending two hours ago: inside the fixtures' partitions
# (yesterday onwards), well below any refresh horizon.
START = floor_to(datetime.now(UTC) - timedelta(hours=5), HOUR) + timedelta(seconds=13)


@pytest.fixture
async def writer(db: asyncpg.Connection) -> ReadingWriter:
    await create_device(db, "pi-1")
    return ReadingWriter(db)


@pytest.fixture
def refresher(database_url: str) -> Callable[..., Awaitable[rollups.RefreshReport]]:
    """Runs one refresh on a connection of its own, as the ingest service does."""

    async def run(**options: Any) -> rollups.RefreshReport:
        settings = options.pop("settings", StorageSettings())
        conn = await asyncpg.connect(database_url)
        try:
            return await refresh_rollups(conn, settings, **options)
        finally:
            await conn.close()

    return run


async def _wait_for_lock_wait(db: asyncpg.Connection, deadline_s: float = 10) -> None:
    """Until some backend waits for the rollup gate."""
    deadline = time.monotonic() + deadline_s
    while not await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1",
        GATE_LOCK_KEY & 0xFFFF_FFFF,
    ):
        assert time.monotonic() < deadline, "nobody waited for the gate"
        await asyncio.sleep(0.01)


async def test_rollup_tables_are_keyed_by_series_and_bucket_and_start_unmaterialized(
    db: asyncpg.Connection,
) -> None:
    """Their columns, the same as the continuous aggregates': test_migrations.py."""
    for source in ROLLUP_SOURCES:
        for width in ("1m", "1h"):
            key = await db.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
                source.rollup(width),
            )
            assert key == f"PRIMARY KEY ({source.key}, bucket)"
    marks = await db.fetch("SELECT rollup, watermark FROM rollup_watermarks")
    assert {r["rollup"] for r in marks} == {s.rollup(w) for s in ROLLUP_SOURCES for w in ("1m", "1h")}
    assert {r["watermark"] for r in marks} == {None}


async def test_refresh_materializes_closed_buckets_as_raw_aggregation_gives_them(
    db: asyncpg.Connection, writer: ReadingWriter, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    await write_fleet(writer, "pi-1", START, minutes=180)

    report = await refresher()

    assert report.ran and report.caught_up
    now = await db.fetchval("SELECT now()")
    assert report.horizon is not None and now - timedelta(minutes=4) <= report.horizon <= now
    marks = {r["rollup"]: r["watermark"] for r in await db.fetch("SELECT * FROM rollup_watermarks")}
    assert marks["environment_readings_1m"] == report.horizon
    assert marks["environment_readings_1h"] == floor_to(report.horizon, HOUR)
    assert await assert_rollups_match_raw(db) > 180 * 3  # three kinds have a reading in every minute
    temperatures = await rollup_buckets(db, ENVIRONMENT_SOURCE, "1h")
    assert sum(values[0] for values in temperatures.values()) == 180 * 60 // 7 + 1

    again = await refresher()  # nothing new: nothing changes
    assert again.minute_rows == 0 and again.invalidations == 0
    await assert_rollups_match_raw(db)


ENVIRONMENT_SOURCE = next(s for s in ROLLUP_SOURCES if s.table == ENVIRONMENT.table)


async def test_late_rows_are_recorded_and_folded_in_by_the_next_refresh(
    db: asyncpg.Connection, writer: ReadingWriter, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    await write_fleet(writer, "pi-1", START, minutes=120)
    await refresher()

    late = START + timedelta(minutes=30, seconds=1)
    await writer.write("pi-1", [environment("bme280", late + timedelta(seconds=i), 99.5) for i in range(3)])
    pending = await db.fetch("SELECT source_table, key, first_time, last_time FROM rollup_invalidations")
    assert [(r["source_table"], r["first_time"], r["last_time"]) for r in pending] == [
        ("environment_readings", late, late + timedelta(seconds=2))
    ]
    with pytest.raises(AssertionError):  # the rollup does not know yet
        await assert_rollups_match_raw(db)

    report = await refresher()

    assert report.invalidations == 1
    assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 0
    await assert_rollups_match_raw(db)


async def test_a_writer_holding_the_gate_is_waited_for(
    db: asyncpg.Connection,
    database_url: str,
    writer: ReadingWriter,
    refresher: Callable[..., Awaitable[rollups.RefreshReport]],
) -> None:
    """A writer that took the gate before the refresher commits rows the
    refresher must see, though it records no invalidation for them."""
    await write_fleet(writer, "pi-1", START, minutes=60)
    sensor_id = await db.fetchval("SELECT sensor_id FROM sensors WHERE name = 'bme280'")
    other = await asyncpg.connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.fetchval(f"WITH {GATE_CTE} SELECT now FROM gate")
        at = START + timedelta(minutes=10, seconds=30)
        await other.execute(
            "INSERT INTO environment_readings (time, sequence, sensor_id, temperature) VALUES ($1, 10000, $2, 77)",
            at,
            sensor_id,
        )
        running = asyncio.create_task(refresher())
        await _wait_for_lock_wait(db)
        assert not running.done()
        await transaction.commit()
        await asyncio.wait_for(running, 30)
    finally:
        await other.close()

    assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 0
    bucket = (await rollup_buckets(db, ENVIRONMENT_SOURCE, "1m"))[(sensor_id, floor_to(at, MINUTE))]
    assert bucket[2] == 77  # temperature_max
    await assert_rollups_match_raw(db)


async def test_a_writer_after_the_gate_records_its_late_rows(
    db: asyncpg.Connection,
    database_url: str,
    writer: ReadingWriter,
    refresher: Callable[..., Awaitable[rollups.RefreshReport]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other order: a writer takes the gate just after the refresher let go
    of it, and commits only after the refresher's snapshot. That refresh misses
    its rows; the invalidation the writer recorded brings them in."""
    await write_fleet(writer, "pi-1", START, minutes=60)
    sensor_id = await db.fetchval("SELECT sensor_id FROM sensors WHERE name = 'bme280'")
    late = START + timedelta(minutes=20, seconds=5)
    other = await asyncpg.connect(database_url)
    transaction = other.transaction()
    real_gate = rollups.pass_gate

    async def gate_then_a_writer_begins(conn: asyncpg.Connection, lock_timeout: timedelta) -> datetime:
        now: datetime = await real_gate(conn, lock_timeout)
        # What every writer does in its batch transaction (ingest's writer.py, ReadingWriter).
        await transaction.start()
        clock = await other.fetchval(f"WITH {GATE_CTE} SELECT now FROM gate")
        assert clock > now
        row = (late, 20000, sensor_id, 55.25)
        await other.execute(
            "INSERT INTO environment_readings (time, sequence, sensor_id, temperature) VALUES ($1, $2, $3, $4)",
            *row,
        )
        await record_late(other, late_ranges({"environment_readings": [row]}, clock - RECENT))
        return now

    monkeypatch.setattr(rollups, "pass_gate", gate_then_a_writer_begins)
    try:
        first = await refresher()
        await transaction.commit()
    finally:
        await other.close()
    monkeypatch.setattr(rollups, "pass_gate", real_gate)

    assert first.horizon is not None and late < first.horizon
    minute = (await rollup_buckets(db, ENVIRONMENT_SOURCE, "1m"))[(sensor_id, floor_to(late, MINUTE))]
    assert minute[2] != 55.25  # that refresh did not see the row
    assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 1

    second = await refresher()

    assert second.invalidations == 1
    minute = (await rollup_buckets(db, ENVIRONMENT_SOURCE, "1m"))[(sensor_id, floor_to(late, MINUTE))]
    assert minute[2] == 55.25
    await assert_rollups_match_raw(db)


async def test_only_one_refresher_runs_at_a_time(
    database_url: str, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    other = await asyncpg.connect(database_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK_KEY)
        assert not (await refresher()).ran
        await other.execute("SELECT pg_advisory_unlock($1)", RUN_LOCK_KEY)
        assert (await refresher()).ran
    finally:
        await other.close()


async def test_a_busy_gate_times_out_and_changes_nothing(
    db: asyncpg.Connection, database_url: str, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.fetchval(f"WITH {GATE_CTE} SELECT now FROM gate")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await refresher(gate_timeout=timedelta(milliseconds=200))
            # The refresher's queued request is gone: writers get the gate at once.
            third = await asyncpg.connect(database_url)
            try:
                async with third.transaction():
                    await asyncio.wait_for(third.fetchval(f"WITH {GATE_CTE} SELECT now FROM gate"), 5)
            finally:
                await third.close()
    finally:
        await other.close()
    assert {r["watermark"] for r in await db.fetch("SELECT watermark FROM rollup_watermarks")} == {None}
    assert (await refresher()).ran


async def test_a_run_out_of_time_goes_on_next_time(
    db: asyncpg.Connection, writer: ReadingWriter, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    await write_fleet(writer, "pi-1", START, minutes=30)
    stopped = await refresher(budget=timedelta(0))
    assert stopped.ran and not stopped.caught_up
    finished = await refresher()
    assert finished.caught_up
    await assert_rollups_match_raw(db)


async def test_retention_drops_old_buckets_per_level(
    db: asyncpg.Connection, writer: ReadingWriter, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    await write_fleet(writer, "pi-1", START, minutes=180)
    await refresher()
    cutoff_age = datetime.now(UTC) - (START + timedelta(minutes=90))
    settings = StorageSettings(rollup_1m_retention=cutoff_age, rollup_1h_retention=timedelta(days=1))

    report = await refresher(settings=settings)

    assert report.expired_rows > 0
    oldest = await db.fetchval("SELECT min(bucket) FROM environment_readings_1m")
    assert START + timedelta(minutes=89) <= oldest <= START + timedelta(minutes=91)
    assert await db.fetchval("SELECT min(bucket) FROM environment_readings_1h") == floor_to(START, HOUR)
    await assert_rollups_match_raw(db, after=floor_to(START + timedelta(hours=2), HOUR))


async def test_deleting_a_device_deletes_its_rollups(
    db: asyncpg.Connection, writer: ReadingWriter, refresher: Callable[..., Awaitable[rollups.RefreshReport]]
) -> None:
    await create_device(db, "pi-2")
    await write_fleet(writer, "pi-1", START, minutes=60)
    await write_fleet(writer, "pi-2", START, minutes=60)
    await refresher()
    await writer.write("pi-1", [environment("bme280", START + timedelta(minutes=5), 1.0)])  # pending
    gone = {r["sensor_id"] for r in await db.fetch("SELECT sensor_id FROM sensors WHERE device_id = 'pi-1'")}
    kept = {r["sensor_id"] for r in await db.fetch("SELECT sensor_id FROM sensors WHERE device_id = 'pi-2'")}

    await delete_device(db, "pi-1")

    for source in ROLLUP_SOURCES:
        for width in ("1m", "1h"):
            keys = {key for key, _ in await rollup_buckets(db, source, width)}
            if source.key == "sensor_id":
                assert not keys & gone and keys & kept, source.rollup(width)
    assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 0
    assert {key for key, _ in await raw_buckets(db, ENVIRONMENT_SOURCE, "1m", datetime.now(UTC))} <= kept
    await refresher()
    await assert_rollups_match_raw(db)
