"""TimescaleDB: rebuild the continuous aggregates so that sums of `real` columns are taken
in double precision, as the plain-PostgreSQL rollups (0003) and the query service's raw
aggregation take them.

The aggregates of 0002 summed `real` columns with sum(real), which accumulates in single
precision: an hour of 100 Hz readings of 9.80665 summed 0.39 % low, and means served from
the rollups disagreed with the raw rows in the seventh digit. A continuous aggregate's
query cannot be altered, so each `<table>_1h` and `<table>_1m` is dropped and created
again (1-minute first: the 1-hour one is built on it) with sum(column::float8), keeping
the refresh and retention policies each had.

The new aggregates start empty (WITH NO DATA, so that the migration stays one short
transaction). Reads stay right meanwhile: the aggregates are real-time, so what is not
materialized yet is aggregated from the raw rows; the refresh policies materialize the
raw retention window in the background, and `sensormesh db refresh-rollups` does it at
once. Buckets older than the raw rows still kept cannot be rebuilt: the migration logs
how many 1-hour buckets that drops, and from when to when.

On plain PostgreSQL nothing changes: 0003's rollup tables already sum in double.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

# table -> (series key column, [(column, type)]), written out as in 0002.
TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "imu_readings": (
        "sensor_id",
        [
            ("acceleration_x", "real"),
            ("acceleration_y", "real"),
            ("acceleration_z", "real"),
            ("angular_rate_x", "real"),
            ("angular_rate_y", "real"),
            ("angular_rate_z", "real"),
        ],
    ),
    "environment_readings": (
        "sensor_id",
        [("temperature", "real"), ("relative_humidity", "real"), ("pressure", "real")],
    ),
    "system_readings": (
        "sensor_id",
        [("cpu_temperature", "real"), ("disk_used", "bigint"), ("disk_free", "bigint")],
    ),
    "measurements": ("series_id", [("value", "double precision")]),
}
ROLLUPS = (("1m", "1 minute"), ("1h", "1 hour"))

# The policies of one aggregate, as TimescaleDB keeps them (jobs name the aggregate's view).
_POLICIES_SQL = text(
    "SELECT proc_name, schedule_interval, config FROM timescaledb_information.jobs "
    "WHERE hypertable_schema = current_schema() AND hypertable_name = :view "
    "AND proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention') ORDER BY job_id"
)


def _sum(column: str, sql_type: str, in_double: bool) -> str:
    return f"sum({column}::float8)" if in_double and sql_type == "real" else f"sum({column})"


def _rollup_sql(table: str, width: str, step: str, in_double: bool) -> str:
    key, columns = TABLES[table]
    if width == "1m":
        source, time_col = table, "time"
        aggs = [
            f"count({c}) AS {c}_count, min({c}) AS {c}_min, max({c}) AS {c}_max, "
            f"{_sum(c, sql_type, in_double)} AS {c}_sum"
            for c, sql_type in columns
        ]
    else:
        source, time_col = f"{table}_1m", "bucket"
        aggs = [
            f"sum({c}_count)::bigint AS {c}_count, min({c}_min) AS {c}_min, "
            f"max({c}_max) AS {c}_max, sum({c}_sum) AS {c}_sum"
            for c, _ in columns
        ]
    bucket = f"time_bucket(INTERVAL '{step}', {time_col})"
    return (
        f"CREATE MATERIALIZED VIEW {table}_{width}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        f"SELECT {key}, {bucket} AS bucket,\n  " + ",\n  ".join(aggs) + f"\nFROM {source}\n"
        f"GROUP BY {key}, {bucket}\nWITH NO DATA"
    )


def _is_timescaledb() -> bool:
    value = op.get_bind().exec_driver_sql("SELECT value FROM sensormesh_meta WHERE key = 'backend'").scalar()
    return value == "timescaledb"


def _policies(view: str) -> list[tuple[str, object, dict[str, object]]]:
    rows = op.get_bind().execute(_POLICIES_SQL, {"view": view}).all()
    return [(r.proc_name, r.schedule_interval, r.config) for r in rows]


def _restore_policies(view: str, policies: list[tuple[str, object, dict[str, object]]]) -> None:
    bind = op.get_bind()
    for proc_name, every, config in policies:
        if proc_name == "policy_retention":
            bind.execute(
                text("SELECT add_retention_policy(:view, drop_after => CAST(:keep AS interval))"),
                {"view": view, "keep": config["drop_after"]},
            )
        else:
            bind.execute(
                text(
                    "SELECT add_continuous_aggregate_policy(:view, "
                    "start_offset => CAST(:start AS interval), end_offset => CAST(:end AS interval), "
                    "schedule_interval => :every)"
                ),
                {
                    "view": view,
                    "start": config.get("start_offset"),
                    "end": config.get("end_offset"),
                    "every": every,
                },
            )


def _log_unrecoverable(table: str) -> None:
    """Report the 1-hour buckets older than the oldest raw row: those go with the old aggregate."""
    row = (
        op.get_bind()
        .exec_driver_sql(
            f"SELECT count(*), min(bucket), max(bucket) FROM {table}_1h "
            f"WHERE bucket < coalesce((SELECT time_bucket(INTERVAL '1 hour', min(time)) FROM {table}), 'infinity')"
        )
        .one()
    )
    if row[0]:
        log.warning(
            "event=rollup_history_dropped rollup=%s_1h buckets=%d first=%s last=%s "
            "(older than the raw rows kept, so it cannot be rebuilt in double precision)",
            table,
            row[0],
            row[1],
            row[2],
        )


def _rebuild(in_double: bool) -> None:
    for table in TABLES:
        _log_unrecoverable(table)
        kept = {width: _policies(f"{table}_{width}") for width, _ in ROLLUPS}
        for width, _ in reversed(ROLLUPS):
            op.execute(f"DROP MATERIALIZED VIEW {table}_{width}")
        for width, step in ROLLUPS:
            op.execute(_rollup_sql(table, width, step, in_double))
            _restore_policies(f"{table}_{width}", kept[width])


def upgrade() -> None:
    if _is_timescaledb():
        _rebuild(in_double=True)
        log.warning(
            "event=rollups_rebuilt aggregates=%d (empty until their refresh policies run, within "
            "30 minutes; `sensormesh db refresh-rollups` fills them now; reads stay exact meanwhile)",
            len(TABLES) * len(ROLLUPS),
        )


def downgrade() -> None:
    if _is_timescaledb():
        _rebuild(in_double=False)
