"""Reading tables: one per typed payload kind plus the narrow measurements
table, as TimescaleDB hypertables (compressed, with 1-minute and 1-hour
continuous aggregates) or as natively range-partitioned PostgreSQL tables.

Which one is decided here, once, and recorded in sensormesh_meta.backend. The
policies that depend on settings (retention, compression age, aggregate
refresh, partitions ahead) are applied by sensormesh_core.storage.maintenance,
not by this migration, so that changing a setting needs no new revision.

The column lists are written out here on purpose: a migration must keep
meaning what it meant when it ran, whatever schema.py says later.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from sensormesh_core.config import TimescaleMode
from sensormesh_core.storage.timescaledb_probe import PROBE_SQL, state_of, use_timescaledb

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (series key column, [(column, type, not null)])
TABLES: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    "imu_readings": (
        "sensor_id",
        [
            ("acceleration_x", "real", True),
            ("acceleration_y", "real", True),
            ("acceleration_z", "real", True),
            ("angular_rate_x", "real", True),
            ("angular_rate_y", "real", True),
            ("angular_rate_z", "real", True),
        ],
    ),
    "environment_readings": (
        "sensor_id",
        [
            ("temperature", "real", True),
            ("relative_humidity", "real", False),
            ("pressure", "real", False),
        ],
    ),
    "system_readings": (
        "sensor_id",
        [
            ("cpu_temperature", "real", False),
            ("disk_used", "bigint", False),
            ("disk_free", "bigint", False),
        ],
    ),
    "measurements": ("series_id", [("value", "double precision", True)]),
}
ROLLUPS = (("1m", "1 minute"), ("1h", "1 hour"))


def _create_table_sql(table: str, key: str, columns: list[tuple[str, str, bool]], partitioned: bool) -> str:
    # time, sequence, key: 8 + 8 + 4 bytes, so the 4-byte reals that follow pack without padding.
    cols = ["time timestamptz NOT NULL", "sequence bigint NOT NULL", f"{key} integer NOT NULL"]
    cols += [f"{name} {sql_type}{' NOT NULL' if not_null else ''}" for name, sql_type, not_null in columns]
    suffix = " PARTITION BY RANGE (time)" if partitioned else ""
    return f"CREATE TABLE {table} (\n  " + ",\n  ".join(cols) + f"\n){suffix}"


def _rollup_sql(table: str, key: str, columns: list[tuple[str, str, bool]], width: str, step: str) -> str:
    """A continuous aggregate keeping count, min, max and sum per value column.

    Sum rather than avg, so that the 1-hour aggregate can be built on the
    1-minute one (hierarchical, TimescaleDB >= 2.9) and a mean over any span is
    sum/count.
    """
    if width == "1m":
        source, time_col = table, "time"
        aggs = [
            f"count({c}) AS {c}_count, min({c}) AS {c}_min, max({c}) AS {c}_max, sum({c}) AS {c}_sum"
            for c, _, _ in columns
        ]
    else:
        source, time_col = f"{table}_1m", "bucket"
        aggs = [
            f"sum({c}_count)::bigint AS {c}_count, min({c}_min) AS {c}_min, "
            f"max({c}_max) AS {c}_max, sum({c}_sum) AS {c}_sum"
            for c, _, _ in columns
        ]
    bucket = f"time_bucket(INTERVAL '{step}', {time_col})"
    return (
        f"CREATE MATERIALIZED VIEW {table}_{width}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        f"SELECT {key}, {bucket} AS bucket,\n  " + ",\n  ".join(aggs) + f"\nFROM {source}\n"
        f"GROUP BY {key}, {bucket}\nWITH NO DATA"
    )


def _use_timescaledb() -> bool:
    """Decide from the setting passed by migrate.py and what the server offers (the probe
    tells a server with the extension's files but no preloaded loader from a ready one)."""
    mode = TimescaleMode(context.config.attributes.get("timescaledb", "auto"))
    row = op.get_bind().exec_driver_sql(PROBE_SQL).one()
    return use_timescaledb(mode, state_of(*row))


def upgrade() -> None:
    timescale = _use_timescaledb()
    if timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table, (key, columns) in TABLES.items():
        op.execute(_create_table_sql(table, key, columns, partitioned=not timescale))
        if timescale:
            op.execute(
                f"SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'), "
                "create_default_indexes => false)"
            )
            op.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{key}', timescaledb.compress_orderby = 'time DESC')"
            )
        # The one access path every query takes: one series (or sensor) over a time range.
        op.execute(f"CREATE INDEX {table}_{key}_time ON {table} ({key}, time DESC)")
        if timescale:
            for width, step in ROLLUPS:
                op.execute(_rollup_sql(table, key, columns, width, step))
    backend = "timescaledb" if timescale else "partitioned"
    op.execute(f"INSERT INTO sensormesh_meta (key, value) VALUES ('backend', '{backend}')")


def downgrade() -> None:
    timescale = bool(
        op.get_bind().exec_driver_sql("SELECT value FROM sensormesh_meta WHERE key = 'backend'").scalar()
        == "timescaledb"
    )
    for table in reversed(TABLES):
        if timescale:
            for width, _ in reversed(ROLLUPS):
                op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {table}_{width}")
        # Dropping a partitioned parent drops its partitions; a hypertable, its chunks.
        op.execute(f"DROP TABLE {table}")
    op.execute("DELETE FROM sensormesh_meta WHERE key = 'backend'")
