"""Historical readings of one series: raw points, or buckets with min, max,
mean and count.

Where the buckets come from:
- TimescaleDB, interval a multiple of 1 hour (or 1 minute): the `<table>_1h`
  (`_1m`) continuous aggregate, regrouped to the interval (count, min, max and
  sum per column; mean = sum / count). Buckets are aligned to the epoch and an
  aggregate bucket nests in exactly one interval bucket, so the regrouping is
  exact. Where the requested range cuts through an aggregate bucket (a range
  starting at 10:00:30 with 1-minute rollups), the cut edges are computed from
  the raw table, so a bucket only ever counts readings inside the range.
- TimescaleDB, any other interval: `time_bucket` over the raw hypertable.
- Plain PostgreSQL: `date_bin` over the raw partitioned table.

Every query is bounded per page: raw reads stop at the page size; bucket reads
cover at most `limit` intervals of time, so a page never aggregates more than
it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from query_service.storage.series import SeriesRef
from sensormesh_core.storage.maintenance import Backend
from sensormesh_core.storage.schema import ROLLUP_WIDTHS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROLLUP_STEPS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("1m", timedelta(minutes=1)),
)
assert {w for w, _ in _ROLLUP_STEPS} == set(ROLLUP_WIDTHS)


@dataclass(frozen=True, slots=True)
class BucketRow:
    start: datetime
    count: int
    min: float
    max: float
    mean: float


def floor_to(moment: datetime, interval: timedelta) -> datetime:
    """The start of the epoch-aligned bucket of `interval` holding `moment`."""
    return EPOCH + ((moment - EPOCH) // interval) * interval


def ceil_to(moment: datetime, interval: timedelta) -> datetime:
    floored = floor_to(moment, interval)
    return floored if floored == moment else floored + interval


def rollup_for(backend: Backend, interval: timedelta) -> tuple[str, timedelta] | None:
    """The widest continuous aggregate whose buckets nest in `interval`, if any."""
    if backend is not Backend.TIMESCALEDB:
        return None
    for width, step in _ROLLUP_STEPS:
        if interval >= step and interval % step == timedelta(0):
            return width, step
    return None


async def raw_points(
    conn: asyncpg.Connection,
    ref: SeriesRef,
    start: datetime,
    end: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` (time, sequence, value) of a series in [start, end), after
    the (time, sequence) cursor, in that order."""
    col, key = ref.value_column, ref.key_column
    base = (
        f"SELECT time, sequence, {col}::float8 AS value FROM {ref.table} "
        f"WHERE {key} = $1 AND time >= $2 AND time < $3 AND {col} IS NOT NULL"
    )
    if after is None:
        return list(await conn.fetch(f"{base} ORDER BY time, sequence LIMIT $4", ref.key, start, end, limit))
    # The row comparison (time, sequence) > ($5, $6), written so that the
    # (key, time) index bounds the scan.
    return list(
        await conn.fetch(
            f"{base} AND time >= $5 AND (time > $5 OR sequence > $6) ORDER BY time, sequence LIMIT $4",
            ref.key,
            start,
            end,
            limit,
            after[0],
            after[1],
        )
    )


def _raw_bucket_sql(ref: SeriesRef, backend: Backend, where_time: str) -> str:
    col, key = ref.value_column, ref.key_column
    if backend is Backend.TIMESCALEDB:
        bucket = "time_bucket($2::interval, time, origin => 'epoch'::timestamptz)"
    else:
        bucket = "date_bin($2::interval, time, 'epoch'::timestamptz)"
    return (
        f"SELECT {bucket} AS bucket, count({col}) AS n, min({col})::float8 AS lo, "
        f"max({col})::float8 AS hi, sum({col}::float8) AS total FROM {ref.table} "
        f"WHERE {key} = $1 AND {col} IS NOT NULL AND ({where_time}) GROUP BY 1"
    )


def _bucket_sql(ref: SeriesRef, backend: Backend, rollup: str | None) -> str:
    """Buckets of [$3, $4) by $2, at most $5; with a rollup, its interior
    [$5, $6) comes from the aggregate and the limit is $7."""
    if rollup is None:
        return _raw_bucket_sql(ref, backend, "time >= $3 AND time < $4") + " ORDER BY 1 LIMIT $5"
    col, key = ref.value_column, ref.key_column
    edges = _raw_bucket_sql(ref, backend, "(time >= $3 AND time < $5) OR (time >= $6 AND time < $4)")
    interior = (
        f"SELECT time_bucket($2::interval, bucket, origin => 'epoch'::timestamptz) AS bucket, "
        f"sum({col}_count)::bigint AS n, min({col}_min)::float8 AS lo, max({col}_max)::float8 AS hi, "
        f"sum({col}_sum)::float8 AS total FROM {ref.table}_{rollup} "
        f"WHERE {key} = $1 AND bucket >= $5 AND bucket < $6 GROUP BY 1"
    )
    return (
        f"SELECT bucket, sum(n)::bigint AS n, min(lo) AS lo, max(hi) AS hi, sum(total) AS total "
        f"FROM ({edges} UNION ALL {interior}) parts GROUP BY bucket HAVING sum(n) > 0 "
        f"ORDER BY bucket LIMIT $7"
    )


def _window_end(start: datetime, end: datetime, interval: timedelta, limit: int) -> datetime:
    """`limit` intervals from `start`'s bucket, or `end` if sooner, or if those bounds lie
    outside the years 1 to 9999 that a datetime holds (the range is then read whole; the
    query's LIMIT still bounds the buckets returned)."""
    try:
        return min(end, floor_to(start, interval) + limit * interval)
    except OverflowError:
        return end


async def buckets(
    conn: asyncpg.Connection,
    ref: SeriesRef,
    backend: Backend,
    start: datetime,
    end: datetime,
    interval: timedelta,
    limit: int,
) -> tuple[list[BucketRow], datetime]:
    """Up to `limit` non-empty buckets of a series with readings in [start, end),
    and where the window read ended.

    Only `limit` intervals of time from `start`'s bucket are read; a caller
    wanting more continues from the returned end (see `next_time`).
    """
    window_end = _window_end(start, end, interval, limit)
    rollup = rollup_for(backend, interval)
    inner_start = inner_end = start
    if rollup is not None:
        _, step = rollup
        try:
            inner_start, inner_end = ceil_to(start, step), floor_to(window_end, step)
        except OverflowError:  # a bucket edge beyond year 9999 or before year 1: the raw table only
            rollup = None
        if inner_end <= inner_start:
            rollup = None
    if rollup is None:
        rows = await conn.fetch(_bucket_sql(ref, backend, None), ref.key, interval, start, window_end, limit)
    else:
        rows = await conn.fetch(
            _bucket_sql(ref, backend, rollup[0]),
            ref.key,
            interval,
            start,
            window_end,
            inner_start,
            inner_end,
            limit,
        )
    found = [BucketRow(r["bucket"], r["n"], r["lo"], r["hi"], r["total"] / r["n"]) for r in rows if r["n"]]
    return found, window_end


async def next_time(
    conn: asyncpg.Connection, ref: SeriesRef, start: datetime, end: datetime
) -> datetime | None:
    """The first sample time of a series in [start, end), to skip an empty stretch."""
    col, key = ref.value_column, ref.key_column
    found: datetime | None = await conn.fetchval(
        f"SELECT time FROM {ref.table} WHERE {key} = $1 AND time >= $2 AND time < $3 "
        f"AND {col} IS NOT NULL ORDER BY time LIMIT 1",
        ref.key,
        start,
        end,
    )
    return found
