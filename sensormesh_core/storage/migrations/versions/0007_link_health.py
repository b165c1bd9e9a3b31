"""Link health of wireless sensors: `link_health_readings` with its rollups, on
the backend 0002 chose.

One row per link-health reading (battery level, battery voltage, signal
strength, link quality; each may be absent), keyed by sensor like the other
typed tables, with the same access path and the same rollups:

- TimescaleDB: a hypertable (1-day chunks, compression segmented by
  sensor_id), continuous aggregates `link_health_readings_1m` / `_1h` summing
  in double precision as since 0005; their refresh, retention and
  compression policies come from settings (`sensormesh db migrate` applies
  them, as for every reading table);
- plain PostgreSQL: a table partitioned by day with a partition for every day
  the other reading tables have one (ingest and maintenance treat a day as
  present when every reading table has it), the BRIN index and rollup tables
  of 0003, and their watermarks (empty: the first refresh starts at the oldest
  partition).

The four quantity names become reserved for typed readings. A generic
measurement stored before under one of them (say `battery_level` from an MQTT
device) is renamed `<name>.generic`, keeping its rows, latest value and
rollups (all keyed by series id): left as it was, its name would send reads to
the new table, where its values are not. The migration logs how many.

The column lists are written out here on purpose, as in 0002: a migration must
keep meaning what it meant when it ran, whatever schema.py says later.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

TABLE = "link_health_readings"
COLUMNS = ("battery_level", "battery_voltage", "signal_strength", "link_quality")  # all real, nullable
ROLLUPS = (("1m", "1 minute"), ("1h", "1 hour"))
GENERIC_SUFFIX = ".generic"


def _backend() -> str:
    value = op.get_bind().exec_driver_sql("SELECT value FROM sensormesh_meta WHERE key = 'backend'").scalar()
    return str(value)


def _create_table_sql(partitioned: bool) -> str:
    # time, sequence, key: 8 + 8 + 4 bytes, so the 4-byte reals that follow pack without padding.
    cols = ["time timestamptz NOT NULL", "sequence bigint NOT NULL", "sensor_id integer NOT NULL"]
    cols += [f"{name} real" for name in COLUMNS]
    suffix = " PARTITION BY RANGE (time)" if partitioned else ""
    return f"CREATE TABLE {TABLE} (\n  " + ",\n  ".join(cols) + f"\n){suffix}"


def _aggregate_sql(width: str, step: str) -> str:
    """A continuous aggregate as 0005 builds them: count, min, max and a double-precision sum."""
    if width == "1m":
        source, time_col = TABLE, "time"
        aggs = [
            f"count({c}) AS {c}_count, min({c}) AS {c}_min, max({c}) AS {c}_max, sum({c}::float8) AS {c}_sum"
            for c in COLUMNS
        ]
    else:
        source, time_col = f"{TABLE}_1m", "bucket"
        aggs = [
            f"sum({c}_count)::bigint AS {c}_count, min({c}_min) AS {c}_min, "
            f"max({c}_max) AS {c}_max, sum({c}_sum) AS {c}_sum"
            for c in COLUMNS
        ]
    bucket = f"time_bucket(INTERVAL '{step}', {time_col})"
    return (
        f"CREATE MATERIALIZED VIEW {TABLE}_{width}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        f"SELECT sensor_id, {bucket} AS bucket,\n  " + ",\n  ".join(aggs) + f"\nFROM {source}\n"
        f"GROUP BY sensor_id, {bucket}\nWITH NO DATA"
    )


def _rollup_table_sql(width: str) -> str:
    """A rollup table as 0003 builds them."""
    cols = ["sensor_id integer NOT NULL", "bucket timestamptz NOT NULL"]
    for name in COLUMNS:
        cols += [
            f"{name}_count bigint NOT NULL",
            f"{name}_min real",
            f"{name}_max real",
            f"{name}_sum double precision",
        ]
    cols.append("PRIMARY KEY (sensor_id, bucket)")
    return f"CREATE TABLE {TABLE}_{width} (\n  " + ",\n  ".join(cols) + "\n)"


def _existing_partition_days() -> list[str]:
    """Days (YYYYMMDD) with a partition of imu_readings, which every reading table has."""
    rows = op.get_bind().exec_driver_sql(
        "SELECT substring(c.relname FROM '_p([0-9]{8})$') FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = 'imu_readings' ORDER BY 1"
    )
    return [day for (day,) in rows if day is not None]


def _rename_generic_series() -> None:
    names = ", ".join(f"'{name}'" for name in COLUMNS)
    renamed = (
        op.get_bind()
        .exec_driver_sql(
            f"UPDATE series s SET quantity = s.quantity || '{GENERIC_SUFFIX}' WHERE s.quantity IN ({names}) "
            "AND NOT EXISTS (SELECT 1 FROM series o WHERE o.sensor_id = s.sensor_id "
            f"AND o.quantity = s.quantity || '{GENERIC_SUFFIX}')"
        )
        .rowcount
    )
    if renamed:
        log.warning(
            "event=generic_series_renamed count=%d names=%s suffix=%s (these names are typed "
            "link-health quantities from now on; the measurements keep their rows under the new name)",
            renamed,
            ",".join(COLUMNS),
            GENERIC_SUFFIX,
        )


def _upgrade_timescaledb() -> None:
    op.execute(_create_table_sql(partitioned=False))
    op.execute(
        f"SELECT create_hypertable('{TABLE}', by_range('time', INTERVAL '1 day'), create_default_indexes => false)"
    )
    op.execute(
        f"ALTER TABLE {TABLE} SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'sensor_id', timescaledb.compress_orderby = 'time DESC')"
    )
    op.execute(f"CREATE INDEX {TABLE}_sensor_id_time ON {TABLE} (sensor_id, time DESC)")
    for width, step in ROLLUPS:
        op.execute(_aggregate_sql(width, step))


def _upgrade_partitioned() -> None:
    op.execute(_create_table_sql(partitioned=True))
    op.execute(f"CREATE INDEX {TABLE}_sensor_id_time ON {TABLE} (sensor_id, time DESC)")
    op.execute(f"CREATE INDEX {TABLE}_time_brin ON {TABLE} USING brin (time) WITH (autosummarize = on)")
    for day in _existing_partition_days():
        lower = datetime.strptime(day, "%Y%m%d").date()
        op.execute(
            f"CREATE TABLE {TABLE}_p{day} PARTITION OF {TABLE} FOR VALUES "
            f"FROM ('{lower.isoformat()} 00:00:00+00') TO ('{(lower + timedelta(days=1)).isoformat()} 00:00:00+00')"
        )
    for width, _ in ROLLUPS:
        op.execute(_rollup_table_sql(width))
        op.execute(f"CREATE INDEX {TABLE}_{width}_bucket_brin ON {TABLE}_{width} USING brin (bucket)")
        op.execute(f"INSERT INTO rollup_watermarks (rollup) VALUES ('{TABLE}_{width}')")


def upgrade() -> None:
    _rename_generic_series()
    if _backend() == "timescaledb":
        _upgrade_timescaledb()
    else:
        _upgrade_partitioned()


def downgrade() -> None:
    if _backend() == "timescaledb":
        for width, _ in reversed(ROLLUPS):
            op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {TABLE}_{width}")
    else:
        for width, _ in reversed(ROLLUPS):
            op.execute(f"DROP TABLE {TABLE}_{width}")
            op.execute(f"DELETE FROM rollup_watermarks WHERE rollup = '{TABLE}_{width}'")
        op.execute(f"DELETE FROM rollup_invalidations WHERE source_table = '{TABLE}'")
    op.execute(f"DROP TABLE {TABLE}")  # a partitioned parent takes its partitions, a hypertable its chunks
    # The typed series lose their rows with the table; then the generic ones get their names back.
    names = ", ".join(f"'{name}'" for name in COLUMNS)
    renamed = ", ".join(f"'{name}{GENERIC_SUFFIX}'" for name in COLUMNS)
    op.execute(f"DELETE FROM series WHERE quantity IN ({names})")
    op.execute(
        f"UPDATE series SET quantity = left(quantity, -{len(GENERIC_SUFFIX)}) WHERE quantity IN ({renamed})"
    )
