"""Rollup tables for the plain-PostgreSQL backend: `<table>_1m` and `<table>_1h`.

On TimescaleDB these names are continuous aggregates (migration 0002). On
plain PostgreSQL they become ordinary tables with the aggregates' columns
(key, bucket, and count / min / max / sum per value column), kept by the
refresher in sensormesh_core.storage.rollups, so that both backends offer the
same names and the query service reads them the same way.

Besides the rollups:
- `rollup_watermarks`: per rollup, the time before which every bucket is
  materialized (NULL: nothing yet; the first refresh starts at the oldest
  partition);
- `rollup_invalidations`: raw time ranges of one key that were written below a
  watermark (late data) and whose buckets must be recomputed;
- a BRIN index on `time` of each reading table: the refresher reads one
  minute of every key at a time, which the (key, time) index cannot serve.
  BRIN costs ingest next to nothing (one summary per 128 pages).

Sums of `real` columns are kept in double precision (the aggregates' sum(real)
accumulates in single precision); a bigint column's sum is numeric, as there.

The column lists are written out here on purpose, as in 0002: a migration must
keep meaning what it meant when it ran, whatever schema.py says later.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (series key column, [(column, type)])
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
WIDTHS = ("1m", "1h")
SUM_TYPES = {"real": "double precision", "bigint": "numeric", "double precision": "double precision"}


def _backend() -> str | None:
    value = op.get_bind().exec_driver_sql("SELECT value FROM sensormesh_meta WHERE key = 'backend'").scalar()
    return None if value is None else str(value)


def _rollup_table_sql(table: str, key: str, columns: list[tuple[str, str]], width: str) -> str:
    cols = [f"{key} integer NOT NULL", "bucket timestamptz NOT NULL"]
    for name, sql_type in columns:
        cols += [
            f"{name}_count bigint NOT NULL",
            f"{name}_min {sql_type}",
            f"{name}_max {sql_type}",
            f"{name}_sum {SUM_TYPES[sql_type]}",
        ]
    cols.append(f"PRIMARY KEY ({key}, bucket)")
    return f"CREATE TABLE {table}_{width} (\n  " + ",\n  ".join(cols) + "\n)"


def upgrade() -> None:
    if _backend() != "partitioned":
        return  # TimescaleDB: the continuous aggregates of 0002 carry these names
    op.execute(
        "CREATE TABLE rollup_watermarks (\n"
        "  rollup text PRIMARY KEY,\n"
        "  watermark timestamptz,\n"
        "  refresh_time timestamptz\n"
        ")"
    )
    op.execute(
        "CREATE TABLE rollup_invalidations (\n"
        "  invalidation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "  source_table text NOT NULL,\n"
        "  key integer NOT NULL,\n"
        "  first_time timestamptz NOT NULL,\n"
        "  last_time timestamptz NOT NULL,\n"
        "  record_time timestamptz NOT NULL DEFAULT now(),\n"
        "  CHECK (first_time <= last_time)\n"
        ")"
    )
    op.execute("CREATE INDEX rollup_invalidations_key ON rollup_invalidations (source_table, key)")
    for table, (key, columns) in TABLES.items():
        op.execute(f"CREATE INDEX {table}_time_brin ON {table} USING brin (time) WITH (autosummarize = on)")
        for width in WIDTHS:
            op.execute(_rollup_table_sql(table, key, columns, width))
            # Retention and the 1-hour level read whole time ranges across keys.
            op.execute(f"CREATE INDEX {table}_{width}_bucket_brin ON {table}_{width} USING brin (bucket)")
            op.execute(f"INSERT INTO rollup_watermarks (rollup) VALUES ('{table}_{width}')")


def downgrade() -> None:
    if _backend() != "partitioned":
        return
    for table in reversed(TABLES):
        for width in reversed(WIDTHS):
            op.execute(f"DROP TABLE {table}_{width}")
        op.execute(f"DROP INDEX {table}_time_brin")
    op.execute("DROP TABLE rollup_invalidations")
    op.execute("DROP TABLE rollup_watermarks")
