"""The rollup refresher for plain PostgreSQL: what TimescaleDB's continuous
aggregate policies do there, done by the service.

One run (`refresh_rollups`, every minute from the ingest service; one replica
at a time by a session advisory lock):

1. pass the gate (`rollup_gate`): every writer transaction that could commit
   rows below the new horizon has committed; read the database clock;
2. per reading table, materialize the 1-minute buckets from the watermark up
   to the horizon (the clock minus `REFRESH_LAG`, floored to the minute), in
   transactions of at most an hour of data, each moving the watermark with
   the rows it wrote;
3. apply invalidations (late rows recorded by writers): recompute the
   affected 1-minute buckets below the watermark from the raw rows, and the
   affected 1-hour buckets from the 1-minute ones, and delete the
   invalidations, in one transaction;
4. roll the 1-hour level up from the 1-minute level, up to the last whole hour
   the 1-minute level covers;
5. delete buckets past `SENSORMESH_ROLLUP_1M_RETENTION` / `_1H_RETENTION`.

A run that hits its time budget (a first catch-up over weeks of data) stops
between transactions and the next run goes on; every committed step is
consistent, and readers treat everything past a watermark as raw.

Every writing transaction takes `WRITE_LOCK_KEY` first, and so does
DeleteDevice (`forget_keys`): a device's buckets are either written before
its deletion, which then deletes them, or computed from a snapshot that no
longer has its rows.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as day_start

import asyncpg

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage import rollup_sql
from sensormesh_core.storage.partitions import oldest_partition_day
from sensormesh_core.storage.rollup_gate import REFRESH_LAG, pass_gate
from sensormesh_core.storage.schema import ROLLUP_SOURCE_BY_TABLE, ROLLUP_SOURCES, RollupSource
from sensormesh_core.storage.time_buckets import DAY, HOUR, MINUTE, ceil_to, floor_to

log = logging.getLogger(__name__)

# Advisory lock keys: one refresher at a time; rollup writes against DeleteDevice.
RUN_LOCK_KEY = 0x5E45_0004
WRITE_LOCK_KEY = 0x5E45_0005

MINUTE_CHUNK = timedelta(hours=1)  # raw time aggregated per transaction
HOUR_CHUNK = timedelta(days=1)  # 1-minute buckets rolled up per transaction
INVALIDATION_BATCH = 5_000

_SET_MARK = "UPDATE rollup_watermarks SET watermark = $2, refresh_time = now() WHERE rollup = $1"

Span = tuple[int, datetime, datetime]  # key, start, end (half-open)


@dataclass
class RefreshReport:
    """What one run did."""

    ran: bool  # False: another replica was refreshing
    horizon: datetime | None = None
    minute_rows: int = 0
    hour_rows: int = 0
    invalidations: int = 0
    expired_rows: int = 0
    caught_up: bool = True  # every watermark reached the horizon (else the budget ran out)


async def refresh_rollups(
    conn: asyncpg.Connection,
    settings: StorageSettings,
    *,
    gate_timeout: timedelta = timedelta(seconds=2),
    budget: timedelta = timedelta(seconds=30),
) -> RefreshReport:
    """One refresh run. `conn` is a connection of its own, outside any
    transaction and not from a pool (the run takes session locks; closing the
    connection releases them whatever happened). Raises
    asyncpg.LockNotAvailableError when writers hold the gate past
    `gate_timeout`: nothing was changed, try again later."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK_KEY):
        return RefreshReport(ran=False)
    try:
        return await _refresh(conn, settings, gate_timeout, time.monotonic() + budget.total_seconds())
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", RUN_LOCK_KEY)


async def _refresh(
    conn: asyncpg.Connection, settings: StorageSettings, gate_timeout: timedelta, deadline: float
) -> RefreshReport:
    started = time.monotonic()
    now: datetime = await pass_gate(conn, gate_timeout)
    horizon = floor_to(now - REFRESH_LAG, MINUTE)
    marks = await watermarks(conn)
    report = RefreshReport(ran=True, horizon=horizon)
    for source in ROLLUP_SOURCES:
        report.minute_rows += await _materialize_minutes(conn, source, marks, horizon, deadline)
    report.invalidations = await _apply_invalidations(conn, marks, settings, now, deadline)
    for source in ROLLUP_SOURCES:
        report.hour_rows += await _roll_hours(conn, source, marks, deadline)
    report.expired_rows = await _expire(conn, settings, now)
    report.caught_up = all(
        marks[s.rollup("1m")] == horizon and marks[s.rollup("1h")] == floor_to(horizon, HOUR)
        for s in ROLLUP_SOURCES
    )
    log.info(
        "event=rollups_refreshed horizon=%s minute_rows=%d hour_rows=%d invalidations=%d "
        "expired_rows=%d caught_up=%s seconds=%.3f",
        horizon.isoformat(), report.minute_rows, report.hour_rows, report.invalidations,
        report.expired_rows, report.caught_up, time.monotonic() - started,
    )  # fmt: skip
    return report


async def watermarks(conn: asyncpg.Connection) -> dict[str, datetime | None]:
    """Per rollup (`imu_readings_1m`, ...), the time before which its buckets are complete."""
    rows = await conn.fetch("SELECT rollup, watermark FROM rollup_watermarks")
    return {r["rollup"]: r["watermark"] for r in rows}


def _count(status: str) -> int:
    """Rows affected, from a command tag such as 'INSERT 0 42' or 'DELETE 7'."""
    return int(status.rsplit(" ", 1)[-1])


async def _start_marks(
    conn: asyncpg.Connection, source: RollupSource, marks: dict[str, datetime | None], horizon: datetime
) -> datetime:
    """Where a table's first refresh starts: its oldest partition (or the horizon, with none)."""
    day = await oldest_partition_day(conn, source.table)
    start = horizon if day is None else min(horizon, datetime.combine(day, day_start(), UTC))
    minute, hour = source.rollup("1m"), source.rollup("1h")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
        await conn.execute(_SET_MARK, minute, start)
        if marks.get(hour) is None:
            marks[hour] = floor_to(start, HOUR)
            await conn.execute(_SET_MARK, hour, marks[hour])
    marks[minute] = start
    return start


async def _materialize_minutes(
    conn: asyncpg.Connection,
    source: RollupSource,
    marks: dict[str, datetime | None],
    horizon: datetime,
    deadline: float,
) -> int:
    name = source.rollup("1m")
    mark = marks.get(name) or await _start_marks(conn, source, marks, horizon)
    written = 0
    while mark < horizon and time.monotonic() < deadline:
        upto = min(horizon, mark + MINUTE_CHUNK)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            written += _count(await conn.execute(rollup_sql.materialize_minutes_sql(source), mark, upto))
            await conn.execute(_SET_MARK, name, upto)
        mark = marks[name] = upto
    return written


async def _roll_hours(
    conn: asyncpg.Connection, source: RollupSource, marks: dict[str, datetime | None], deadline: float
) -> int:
    name, minutes = source.rollup("1h"), marks.get(source.rollup("1m"))
    mark = marks.get(name)
    if mark is None or minutes is None:
        return 0
    target = floor_to(minutes, HOUR)
    written = 0
    while mark < target and time.monotonic() < deadline:
        upto = min(target, mark + HOUR_CHUNK)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            written += _count(await conn.execute(rollup_sql.roll_hours_sql(source), mark, upto))
            await conn.execute(_SET_MARK, name, upto)
        mark = marks[name] = upto
    return written


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Overlapping or touching spans of the same key joined into one, sorted."""
    merged: list[Span] = []
    for key, start, end in sorted(spans):
        if merged and merged[-1][0] == key and start <= merged[-1][2]:
            last = merged[-1]
            merged[-1] = (key, last[1], max(last[2], end))
        else:
            merged.append((key, start, end))
    return merged


def bucket_spans(
    late: Iterable[tuple[int, datetime, datetime]], step: timedelta, floor: datetime, ceiling: datetime | None
) -> list[Span]:
    """The `step` buckets holding late rows (key, first, last inclusive), within [floor, ceiling)."""
    if ceiling is None:
        return []
    spans = []
    for key, first, last in late:
        start, end = max(floor_to(first, step), floor), min(floor_to(last, step) + step, ceiling)
        if start < end:
            spans.append((key, start, end))
    return merge_spans(spans)


def recompute_floors(settings: StorageSettings, now: datetime) -> tuple[datetime, datetime]:
    """The oldest 1-minute and 1-hour buckets a recompute may rewrite: raw rows
    and 1-minute buckets older than their retention may already be gone, and a
    bucket recomputed from part of its rows would be wrong."""
    raw_floor = floor_to(now - settings.retention, DAY)  # partitions are dropped by whole days
    minute_floor = max(raw_floor, ceil_to(now - settings.rollup_1m_retention, MINUTE))
    return minute_floor, ceil_to(minute_floor, HOUR)


async def _apply_invalidations(
    conn: asyncpg.Connection,
    marks: dict[str, datetime | None],
    settings: StorageSettings,
    now: datetime,
    deadline: float,
) -> int:
    minute_floor, hour_floor = recompute_floors(settings, now)
    applied = 0
    while time.monotonic() < deadline:
        rows = await conn.fetch(
            "SELECT invalidation_id, source_table, key, first_time, last_time FROM rollup_invalidations "
            "ORDER BY invalidation_id LIMIT $1",
            INVALIDATION_BATCH,
        )
        if not rows:
            break
        late: dict[str, list[tuple[int, datetime, datetime]]] = defaultdict(list)
        for row in rows:
            late[row["source_table"]].append((row["key"], row["first_time"], row["last_time"]))
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            for table, ranges in late.items():
                source = ROLLUP_SOURCE_BY_TABLE.get(table)
                if source is None:
                    log.warning("event=rollup_invalidation_dropped table=%s reason=unknown_table", table)
                    continue
                minutes = bucket_spans(ranges, MINUTE, minute_floor, marks.get(source.rollup("1m")))
                hours = bucket_spans(ranges, HOUR, hour_floor, marks.get(source.rollup("1h")))
                await _recompute(conn, source, "1m", minutes)
                await _recompute(conn, source, "1h", hours)
            await conn.execute(
                "DELETE FROM rollup_invalidations WHERE invalidation_id = ANY($1::bigint[])",
                [r["invalidation_id"] for r in rows],
            )
        applied += len(rows)
        if len(rows) < INVALIDATION_BATCH:
            break
    return applied


async def _recompute(
    conn: asyncpg.Connection, source: RollupSource, width: str, spans: Sequence[Span]
) -> None:
    """Rewrite the buckets of `spans` (disjoint per key) from the level below."""
    if not spans:
        return
    keys, starts, ends = [s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans]
    await conn.execute(rollup_sql.clear_ranges_sql(source, width), keys, starts, ends)
    build = rollup_sql.recompute_minutes_sql if width == "1m" else rollup_sql.recompute_hours_sql
    await conn.execute(build(source), keys, starts, ends)


async def _expire(conn: asyncpg.Connection, settings: StorageSettings, now: datetime) -> int:
    cutoffs = {"1m": now - settings.rollup_1m_retention, "1h": now - settings.rollup_1h_retention}
    expired = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
        for source in ROLLUP_SOURCES:
            for width, cutoff in cutoffs.items():
                expired += _count(await conn.execute(rollup_sql.expire_sql(source, width), cutoff))
    return expired


async def forget_keys(conn: asyncpg.Connection, sensor_ids: Sequence[int], series_ids: Sequence[int]) -> None:
    """Delete every bucket and pending invalidation of these sensors and series.

    Call inside the transaction that deletes their raw rows (DeleteDevice);
    waits for a refresher transaction in progress, so none can write them again.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
    for source in ROLLUP_SOURCES:
        keys = list(series_ids if source.key == "series_id" else sensor_ids)
        if not keys:
            continue
        for width in rollup_sql.STEPS_SQL:
            await conn.execute(rollup_sql.forget_keys_sql(source, width), keys)
        await conn.execute(
            "DELETE FROM rollup_invalidations WHERE source_table = $1 AND key = ANY($2::integer[])",
            source.table,
            keys,
        )


async def has_rollup_tables(conn: asyncpg.Connection) -> bool:
    """Whether this database has the plain-PostgreSQL rollups (migration 0003, partitioned backend)."""
    return bool(await conn.fetchval("SELECT to_regclass('rollup_watermarks') IS NOT NULL"))
