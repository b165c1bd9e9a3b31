"""Latest values: one row per series in `latest_values`, kept by ingest.

GetLatestReadings reads it with one indexed join per call; no history is
scanned however much a device has stored. Values of `real` quantities are served
as the decimal that was sent, as history serves them (stored_floats.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from query_service.storage.stored_floats import value_sql
from sensormesh_core.storage.schema import TYPED_TABLES, SqlType

# Typed quantities stored as `real`: latest_values keeps their exact widening to double, which
# is served as the decimal that was sent (stored_floats.py).
REAL_QUANTITIES = [q.name for t in TYPED_TABLES for q in t.quantities if q.sql_type is SqlType.REAL]


@dataclass(frozen=True, slots=True)
class LatestRow:
    sensor: str
    quantity: str
    unit: str
    time: datetime
    value: float


async def latest_values(
    conn: asyncpg.Connection,
    device_id: str,
    sensors: Sequence[str] = (),
    quantities: Sequence[str] = (),
) -> list[LatestRow]:
    """The last value of each of the device's (filtered) series, by sensor then quantity."""
    rows = await conn.fetch(
        "SELECT s.name, se.quantity, se.unit, lv.time, "
        f"CASE WHEN se.quantity = ANY($4::text[]) THEN {value_sql('lv.value::real', SqlType.REAL)} "
        "ELSE lv.value END AS value FROM sensors s "
        "JOIN series se USING (sensor_id) JOIN latest_values lv USING (series_id) "
        "WHERE s.device_id = $1 "
        "AND (cardinality($2::text[]) = 0 OR s.name = ANY($2::text[])) "
        "AND (cardinality($3::text[]) = 0 OR se.quantity = ANY($3::text[])) "
        'ORDER BY s.name COLLATE "C", se.quantity COLLATE "C"',
        device_id,
        list(sensors),
        list(quantities),
        REAL_QUANTITIES,
    )
    return [LatestRow(r["name"], r["quantity"], r["unit"], r["time"], r["value"]) for r in rows]
