"""SQL of the plain-PostgreSQL rollups, built from schema.py's `RollupSource`s.

Buckets are aligned to the Unix epoch (`date_bin(step, time, epoch)`), as
TimescaleDB's `time_bucket` aligns them, so a 1-minute bucket nests in
exactly one 1-hour bucket and in exactly one bucket of any interval that is a
whole number of minutes. Sums of `real` columns are taken in double precision,
exactly as the query service sums raw values, so a mean served from a rollup
equals the mean over the raw rows (to the last bit when the partial sums are
exact, and otherwise to the rounding of a different summation order).
"""

from __future__ import annotations

from sensormesh_core.storage.schema import RollupSource, SqlType

EPOCH_SQL = "'epoch'::timestamptz"
STEPS_SQL = {"1m": "1 minute", "1h": "1 hour"}


def _sum_of(column: str, sql_type: SqlType) -> str:
    return f"sum({column}::float8)" if sql_type is SqlType.REAL else f"sum({column})"


def rollup_columns(source: RollupSource) -> list[str]:
    """The rollup's columns in table order (key, bucket, count/min/max/sum per value column)."""
    names = [source.key, "bucket"]
    for column, _ in source.columns:
        names += [f"{column}_count", f"{column}_min", f"{column}_max", f"{column}_sum"]
    return names


def _from_raw(source: RollupSource) -> str:
    aggregates = [f"count({c}), min({c}), max({c}), {_sum_of(c, sql_type)}" for c, sql_type in source.columns]
    return f"{source.key}, date_bin('1 minute', time, {EPOCH_SQL}), " + ", ".join(aggregates)


def _from_minutes(source: RollupSource) -> str:
    aggregates = [
        f"sum({c}_count)::bigint, min({c}_min), max({c}_max), sum({c}_sum)" for c, _ in source.columns
    ]
    return f"{source.key}, date_bin('1 hour', bucket, {EPOCH_SQL}), " + ", ".join(aggregates)


def _insert(source: RollupSource, width: str) -> tuple[str, str]:
    columns = rollup_columns(source)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[2:])
    return f"INSERT INTO {source.rollup(width)} ({', '.join(columns)})", (
        f"ON CONFLICT ({source.key}, bucket) DO UPDATE SET {updates}"
    )


def materialize_minutes_sql(source: RollupSource) -> str:
    """1-minute buckets of every key with readings in [$1, $2) (minute-aligned)."""
    insert, upsert = _insert(source, "1m")
    return (
        f"{insert} SELECT {_from_raw(source)} FROM {source.table} "
        f"WHERE time >= $1 AND time < $2 GROUP BY 1, 2 {upsert}"
    )


def roll_hours_sql(source: RollupSource) -> str:
    """1-hour buckets of every key from the 1-minute buckets in [$1, $2) (hour-aligned)."""
    insert, upsert = _insert(source, "1h")
    return (
        f"{insert} SELECT {_from_minutes(source)} FROM {source.rollup('1m')} "
        f"WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2 {upsert}"
    )


def clear_ranges_sql(source: RollupSource, width: str) -> str:
    """Delete the buckets of key $1[i] in [$2[i], $3[i]) for every i."""
    return (
        f"DELETE FROM {source.rollup(width)} AS r "
        "USING unnest($1::integer[], $2::timestamptz[], $3::timestamptz[]) AS s(key, lo, hi) "
        f"WHERE r.{source.key} = s.key AND r.bucket >= s.lo AND r.bucket < s.hi"
    )


def recompute_minutes_sql(source: RollupSource) -> str:
    """1-minute buckets of key $1[i] in [$2[i], $3[i]) from the raw rows (ranges disjoint per key)."""
    insert, upsert = _insert(source, "1m")
    return (
        f"{insert} SELECT {_from_raw(source)} "
        "FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[]) AS s(key, lo, hi) "
        f"CROSS JOIN LATERAL (SELECT * FROM {source.table} "
        f"WHERE {source.key} = s.key AND time >= s.lo AND time < s.hi) AS raw GROUP BY 1, 2 {upsert}"
    )


def recompute_hours_sql(source: RollupSource) -> str:
    """1-hour buckets of key $1[i] in [$2[i], $3[i]) from the 1-minute buckets."""
    insert, upsert = _insert(source, "1h")
    return (
        f"{insert} SELECT {_from_minutes(source)} "
        "FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[]) AS s(key, lo, hi) "
        f"CROSS JOIN LATERAL (SELECT * FROM {source.rollup('1m')} "
        f"WHERE {source.key} = s.key AND bucket >= s.lo AND bucket < s.hi) AS m GROUP BY 1, 2 {upsert}"
    )


def expire_sql(source: RollupSource, width: str) -> str:
    """Delete the buckets before $1."""
    return f"DELETE FROM {source.rollup(width)} WHERE bucket < $1"


def forget_keys_sql(source: RollupSource, width: str) -> str:
    """Delete every bucket of the keys in $1."""
    return f"DELETE FROM {source.rollup(width)} WHERE {source.key} = ANY($1::integer[])"
