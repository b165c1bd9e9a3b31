"""Historical readings of one series: raw points, or buckets with min, max,
mean and count.

Where the buckets come from, on both backends in the same way: the
`<table>_1h` and `<table>_1m` rollups when the interval is a multiple of their
width (count, min, max and sum per column, regrouped to the interval; mean =
sum / count), and `date_bin` / `time_bucket` over the raw table for what they
do not cover (coverage.py): the edges where the requested range cuts a rollup
bucket, the tail past a rollup's watermark, and buckets with late rows not
yet folded in. Buckets are aligned to the epoch and a rollup bucket nests in
exactly one interval bucket, so every bucket counts exactly the readings
inside the range, as aggregating the raw rows would.

- TimescaleDB: the rollups are continuous aggregates (real-time, so their
  watermark is no concern here; the cut edges come from the raw table). Rows
  written below what an aggregate has materialized (an agent's backlog) stay
  out of it until its next refresh; TimescaleDB's invalidation logs say which
  time ranges those are, and they are read from the raw table meanwhile.
- Plain PostgreSQL: rollup tables kept by the refresher
  (sensormesh_core/storage/rollups.py), read up to their watermarks; one small
  query first reads the watermarks and the series' pending invalidations.

Every query is bounded per page: raw reads stop at the page size; bucket reads
cover at most `limit` intervals of time, so a page never aggregates more than
it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from query_service.storage.coverage import ALWAYS, NEVER, Level, Piece, Span, plan
from query_service.storage.series import SeriesRef
from query_service.storage.stored_floats import mean_as_sent, value_sql
from sensormesh_core.storage.maintenance import Backend
from sensormesh_core.storage.schema import ROLLUP_WIDTHS, SqlType
from sensormesh_core.storage.time_buckets import EPOCH, floor_to

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


def rollups_for(interval: timedelta) -> list[tuple[str, timedelta]]:
    """The rollup widths whose buckets nest in `interval`, widest first."""
    return [
        (width, step) for width, step in _ROLLUP_STEPS if interval >= step and interval % step == timedelta(0)
    ]


async def raw_points(
    conn: asyncpg.Connection,
    ref: SeriesRef,
    start: datetime,
    end: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
    *,
    micros: bool = False,
) -> list[asyncpg.Record]:
    """Up to `limit` (time, sequence, value) of a series in [start, end), after
    the (time, sequence) cursor, in that order. With `micros` the time comes as
    `micros`, an int of microseconds since the epoch, instead: PostgreSQL's
    arithmetic is cheaper than a Python datetime per row when the caller wants
    the number anyway (the columnar view; 86,400 datetimes cost 25 ms)."""
    col, key = ref.value_column, ref.key_column
    time_sql = "(extract(epoch FROM time) * 1000000)::int8 AS micros" if micros else "time"
    base = (
        f"SELECT {time_sql}, sequence, {value_sql(col, ref.sql_type)} AS value FROM {ref.table} "
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


def _bucket_of(backend: Backend, column: str) -> str:
    if backend is Backend.TIMESCALEDB:
        return f"time_bucket($2::interval, {column}, origin => 'epoch'::timestamptz)"
    return f"date_bin($2::interval, {column}, 'epoch'::timestamptz)"


def _bucket_sql(ref: SeriesRef, backend: Backend) -> str:
    """Buckets of width $2 from the pieces of each source, at most $3.

    Raw pieces are [$4[i], $5[i]); 1-minute rollup pieces [$6[i], $7[i]);
    1-hour ones [$8[i], $9[i]). An empty array costs nothing: its lateral
    subquery never runs.
    """
    col, key = ref.value_column, ref.key_column
    raw = (
        f"SELECT {_bucket_of(backend, 'x.time')} AS bucket, count(x.v) AS n, min(x.v) AS lo, "
        "max(x.v) AS hi, sum(x.v::float8) AS total "
        "FROM unnest($4::timestamptz[], $5::timestamptz[]) AS r(lo, hi) "
        f"CROSS JOIN LATERAL (SELECT time, {col} AS v FROM {ref.table} WHERE {key} = $1 "
        f"AND time >= r.lo AND time < r.hi AND {col} IS NOT NULL) AS x GROUP BY 1"
    )
    rolled = [
        f"SELECT {_bucket_of(backend, 'y.bucket')} AS bucket, sum(y.n)::bigint AS n, min(y.lo) AS lo, "
        "max(y.hi) AS hi, sum(y.total)::float8 AS total "
        f"FROM unnest(${first}::timestamptz[], ${first + 1}::timestamptz[]) AS r(lo, hi) "
        f"CROSS JOIN LATERAL (SELECT bucket, {col}_count AS n, {col}_min AS lo, {col}_max AS hi, "
        f"{col}_sum AS total FROM {ref.table}_{width} WHERE {key} = $1 "
        "AND bucket >= r.lo AND bucket < r.hi) AS y GROUP BY 1"
        for width, first in (("1m", 6), ("1h", 8))
    ]
    lo, hi = value_sql("min(lo)", ref.sql_type), value_sql("max(hi)", ref.sql_type)
    return (
        f"SELECT bucket, sum(n)::bigint AS n, {lo} AS lo, {hi} AS hi, sum(total) AS total "
        f"FROM ({raw} UNION ALL {rolled[0]} UNION ALL {rolled[1]}) AS parts "
        "GROUP BY bucket HAVING sum(n) > 0 ORDER BY bucket LIMIT $3"
    )


# What the refresher has materialized (plain PostgreSQL): the watermarks of the
# rollups named in $1, and the pending invalidations of the series' key in [$4, $5).
_COVERAGE_SQL = (
    "SELECT m.names, m.marks, ARRAY(SELECT tstzrange(i.first_time, i.last_time, '[]') "
    "FROM rollup_invalidations i WHERE i.source_table = $2 AND i.key = $3 "
    "AND i.first_time < $5 AND i.last_time >= $4) AS stale "
    "FROM (SELECT array_agg(rollup ORDER BY rollup) AS names, array_agg(watermark ORDER BY rollup) AS marks "
    "FROM rollup_watermarks WHERE rollup = ANY($1::text[])) AS m"
)
_MICROSECOND = timedelta(microseconds=1)

# What TimescaleDB has not folded into the continuous aggregates named in $1, as time spans
# clipped to [$2, $3) and to the years a datetime holds (asyncpg sends datetime.min and max
# as -infinity and infinity), in microseconds since the Unix epoch, per aggregate: its invalidation logs, pending per source hypertable (the
# raw table for a 1-minute aggregate, the 1-minute one's materialization for the 1-hour one)
# and per aggregate (which also keeps what no refresh window has reached: before the first
# refresh's window and after the last one's end). They hold inclusive ranges in the
# extension's internal time (microseconds since the Unix epoch, unbounded ends as the int64
# extremes), made half-open by one microsecond; a 1-hour aggregate's spans are 1-minute
# bucket starts, so they are widened by a minute instead. The catalog tables are
# TimescaleDB's own (readable by every role, the same since 2.0); test_backends_agree.py
# checks them on the versions it runs against.
_TIMESCALE_STALE_SQL = (
    "WITH aggregates AS (SELECT c.user_view_name AS view, c.mat_hypertable_id AS mat, "
    "c.raw_hypertable_id AS raw, CASE WHEN EXISTS (SELECT 1 FROM _timescaledb_catalog.continuous_agg s "
    "WHERE s.mat_hypertable_id = c.raw_hypertable_id) THEN 60000000 ELSE 1 END AS widen "
    "FROM _timescaledb_catalog.continuous_agg c "
    "WHERE c.user_view_schema = current_schema() AND c.user_view_name = ANY($1::text[])), "
    "bounds AS (SELECT CASE WHEN isfinite($2::timestamptz) THEN (extract(epoch FROM $2) * 1e6)::bigint "
    "ELSE -62135596800000000 END AS lo, CASE WHEN isfinite($3::timestamptz) THEN "
    "(extract(epoch FROM $3) * 1e6)::bigint ELSE 253402300799999999 END AS hi), "
    "pending AS (SELECT a.view, a.widen, l.lowest_modified_value AS lo, l.greatest_modified_value AS hi "
    "FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log l "
    "JOIN aggregates a ON l.hypertable_id = a.raw UNION ALL "
    "SELECT a.view, a.widen, m.lowest_modified_value, m.greatest_modified_value "
    "FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log m "
    "JOIN aggregates a ON m.materialization_id = a.mat) "
    "SELECT p.view, greatest(p.lo, b.lo) AS lo, least(least(p.hi, b.hi) + p.widen, b.hi) AS hi "
    "FROM pending p, bounds b WHERE p.lo < b.hi AND least(p.hi, b.hi) + p.widen > b.lo"
)


async def _coverage(
    conn: asyncpg.Connection,
    ref: SeriesRef,
    backend: Backend,
    interval: timedelta,
    start: datetime,
    end: datetime,
) -> tuple[list[Level], list[Span]]:
    """The rollup levels usable for `interval`, widest first, and the stale spans."""
    usable = rollups_for(interval)
    if not usable:
        return [], []
    if backend is Backend.TIMESCALEDB:
        return await _timescale_coverage(conn, ref, usable, start, end)
    names = {f"{ref.table}_{width}": width for width, _ in usable}
    row = await conn.fetchrow(_COVERAGE_SQL, list(names), ref.table, ref.key, start, end)
    marks = {names[n]: m or NEVER for n, m in zip(row["names"] or [], row["marks"] or [], strict=True)}
    levels = [Level(width, step, marks.get(width, NEVER)) for width, step in usable]
    stale = [(r.lower, r.upper + _MICROSECOND) for r in row["stale"]]
    return levels, stale


async def _timescale_coverage(
    conn: asyncpg.Connection,
    ref: SeriesRef,
    usable: list[tuple[str, timedelta]],
    start: datetime,
    end: datetime,
) -> tuple[list[Level], list[Span]]:
    """Real-time levels; what the 1-minute aggregate misses is stale for every level (the
    1-hour one is built on it), what only the 1-hour one misses is stale for it alone."""
    finest = f"{ref.table}_1m"
    rows = await conn.fetch(_TIMESCALE_STALE_SQL, [f"{ref.table}_{w}" for w in ROLLUP_WIDTHS], start, end)
    spans = [(r["view"], (EPOCH + r["lo"] * _MICROSECOND, EPOCH + r["hi"] * _MICROSECOND)) for r in rows]
    common = [span for view, span in spans if view == finest]
    own = {w: tuple(span for view, span in spans if view == f"{ref.table}_{w}") for w, _ in usable}
    levels = [Level(width, step, ALWAYS, () if width == "1m" else own[width]) for width, step in usable]
    return levels, common


def _window_end(start: datetime, end: datetime, interval: timedelta, limit: int) -> datetime:
    """`limit` intervals from `start`'s bucket, or `end` if sooner, or if those bounds lie
    outside the years 1 to 9999 that a datetime holds (the range is then read whole; the
    query's LIMIT still bounds the buckets returned)."""
    try:
        return min(end, floor_to(start, interval) + limit * interval)
    except OverflowError:
        return end


def _pieces(start: datetime, end: datetime, levels: list[Level], stale: list[Span]) -> list[Piece]:
    """`plan`'s pieces; a range whose rollup bucket edges would fall outside the years a
    datetime holds (near year 1 or 9999) is read from the raw table instead."""
    try:
        return plan(start, end, levels, stale)
    except OverflowError:
        return [Piece(None, start, end)]


def _mean(mean: float, lo: float, hi: float, real: bool) -> float:
    """A bucket's mean as served: rounded to the values' precision when they are `real`."""
    return mean_as_sent(mean, lo, hi) if real else mean


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
    levels, stale = await _coverage(conn, ref, backend, interval, start, window_end)
    spans: dict[str | None, tuple[list[datetime], list[datetime]]] = {w: ([], []) for w in (None, "1m", "1h")}
    for piece in _pieces(start, window_end, levels, stale):
        spans[piece.source][0].append(piece.start)
        spans[piece.source][1].append(piece.end)
    rows = await conn.fetch(
        _bucket_sql(ref, backend),
        ref.key,
        interval,
        limit,
        *spans[None],
        *spans["1m"],
        *spans["1h"],
    )
    real = ref.sql_type is SqlType.REAL
    found = [
        BucketRow(r["bucket"], r["n"], r["lo"], r["hi"], _mean(r["total"] / r["n"], r["lo"], r["hi"], real))
        for r in rows
        if r["n"]
    ]
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
