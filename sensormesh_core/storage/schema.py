"""The mapping between typed payloads and storage: one table per payload kind,
one column per quantity, one row per reading.

Why one table per kind rather than one sparse table: see docs/storage.md (the
measured figures). In short, a row pays a 24-byte header and an index entry
whatever it holds, so an IMU reading is one row of six values; per-kind tables
keep every column NOT NULL where the payload requires it and let TimescaleDB
compress each kind with its own segmentation.

Ingest writes these columns, query reads them, the migrations create them: all
three take the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SqlType(StrEnum):
    """Column types used by reading tables."""

    REAL = "real"
    BIGINT = "bigint"
    DOUBLE = "double precision"


@dataclass(frozen=True, slots=True)
class Quantity:
    """One typed quantity: a column of a reading table and a series name."""

    name: str  # series quantity and column name, e.g. "acceleration_x"
    proto_field: str  # field of the payload message, e.g. "acceleration_x_mps2"
    unit: str  # UCUM-style unit shown to users
    sql_type: SqlType
    required: bool  # NOT NULL in storage (the proto field is not optional)


@dataclass(frozen=True, slots=True)
class PayloadTable:
    """A typed payload kind and the table its readings go to."""

    payload: str  # name of the Reading.payload oneof member, e.g. "imu"
    table: str
    quantities: tuple[Quantity, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column in table order, key columns first."""
        return (*KEY_COLUMNS, *(q.name for q in self.quantities))

    def rollup(self, width: str) -> str:
        """Name of this table's continuous aggregate of `width` ("1m", "1h")."""
        return f"{self.table}_{width}"


# Key columns of every typed reading table, in table order. `sequence` is the
# device's number for the reading: it lets a live feed fetch exactly one
# committed batch, and tells an operator which upload wrote a row.
KEY_COLUMNS: tuple[str, ...] = ("time", "sequence", "sensor_id")

IMU = PayloadTable(
    payload="imu",
    table="imu_readings",
    quantities=(
        Quantity("acceleration_x", "acceleration_x_mps2", "m/s2", SqlType.REAL, True),
        Quantity("acceleration_y", "acceleration_y_mps2", "m/s2", SqlType.REAL, True),
        Quantity("acceleration_z", "acceleration_z_mps2", "m/s2", SqlType.REAL, True),
        Quantity("angular_rate_x", "angular_rate_x_dps", "deg/s", SqlType.REAL, True),
        Quantity("angular_rate_y", "angular_rate_y_dps", "deg/s", SqlType.REAL, True),
        Quantity("angular_rate_z", "angular_rate_z_dps", "deg/s", SqlType.REAL, True),
    ),
)

ENVIRONMENT = PayloadTable(
    payload="environment",
    table="environment_readings",
    quantities=(
        Quantity("temperature", "temperature_celsius", "Cel", SqlType.REAL, True),
        Quantity("relative_humidity", "relative_humidity_percent", "%", SqlType.REAL, False),
        Quantity("pressure", "pressure_hpa", "hPa", SqlType.REAL, False),
    ),
)

SYSTEM = PayloadTable(
    payload="system",
    table="system_readings",
    quantities=(
        Quantity("cpu_temperature", "cpu_temperature_celsius", "Cel", SqlType.REAL, False),
        Quantity("disk_used", "disk_used_bytes", "By", SqlType.BIGINT, False),
        Quantity("disk_free", "disk_free_bytes", "By", SqlType.BIGINT, False),
    ),
)

# A wireless sensor's battery and radio link, in a table of its own rather than
# columns beside its data: link health comes every minute or so, the data of the
# same sensor up to 100 times a second (docs/storage.md has the figures).
LINK_HEALTH = PayloadTable(
    payload="link_health",
    table="link_health_readings",
    quantities=(
        Quantity("battery_level", "battery_level_percent", "%", SqlType.REAL, False),
        Quantity("battery_voltage", "battery_voltage_volts", "V", SqlType.REAL, False),
        Quantity("signal_strength", "signal_strength_dbm", "dB[mW]", SqlType.REAL, False),
        Quantity("link_quality", "link_quality_percent", "%", SqlType.REAL, False),
    ),
)

TYPED_TABLES: tuple[PayloadTable, ...] = (IMU, ENVIRONMENT, SYSTEM, LINK_HEALTH)
TYPED_BY_PAYLOAD: dict[str, PayloadTable] = {t.payload: t for t in TYPED_TABLES}
TYPED_QUANTITIES: dict[str, tuple[PayloadTable, Quantity]] = {
    q.name: (t, q) for t in TYPED_TABLES for q in t.quantities
}

# Generic named measurements: a narrow table keyed by series (sensor + name).
MEASUREMENTS_TABLE = "measurements"
MEASUREMENT_COLUMNS: tuple[str, ...] = ("time", "sequence", "series_id", "value")
MEASUREMENT_PAYLOAD = "measurement"

READING_TABLES: tuple[str, ...] = (*(t.table for t in TYPED_TABLES), MEASUREMENTS_TABLE)

# Rollup widths: continuous aggregates on TimescaleDB, tables kept by the refresher on plain PostgreSQL.
ROLLUP_WIDTHS: dict[str, str] = {"1m": "1 minute", "1h": "1 hour"}


@dataclass(frozen=True, slots=True)
class RollupSource:
    """A reading table as its rollups see it: the series key and the value columns.

    Each `<table>_<width>` rollup holds, per key and bucket, `<column>_count`,
    `_min`, `_max` and `_sum` of every value column (a mean is sum / count).
    """

    table: str
    key: str  # "sensor_id" or "series_id"
    columns: tuple[tuple[str, SqlType], ...]

    def rollup(self, width: str) -> str:
        return f"{self.table}_{width}"


ROLLUP_SOURCES: tuple[RollupSource, ...] = (
    *(
        RollupSource(t.table, "sensor_id", tuple((q.name, q.sql_type) for q in t.quantities))
        for t in TYPED_TABLES
    ),
    RollupSource(MEASUREMENTS_TABLE, "series_id", (("value", SqlType.DOUBLE),)),
)
ROLLUP_SOURCE_BY_TABLE: dict[str, RollupSource] = {s.table: s for s in ROLLUP_SOURCES}

# Bookkeeping of the rollups on plain PostgreSQL (migration 0003; TimescaleDB keeps its own).
ROLLUP_WATERMARKS = "rollup_watermarks"
ROLLUP_INVALIDATIONS = "rollup_invalidations"

# Camera frames (migration 0008): metadata rows and images, each partitioned by capture time
# (hypertables, or daily partitions on plain PostgreSQL) with a retention of their own.
FRAMES_TABLE = "frames"
FRAME_BLOBS_TABLE = "frame_blobs"
FRAME_TABLES: tuple[str, ...] = (FRAMES_TABLE, FRAME_BLOBS_TABLE)
# What ingest writes per frame, in table order (receive_time takes its default).
FRAME_COLUMNS: tuple[str, ...] = (
    "time",
    "sequence",
    "device_id",
    "camera",
    "content_type",
    "width",
    "height",
    "size_bytes",
)
