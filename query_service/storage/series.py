"""The series of a device: what ListReadings and GetLatestReadings iterate.

Ingest creates a `series` row for every quantity it stores, typed ones
included, so this table is the catalogue of what exists; a series says which
reading table and column hold its values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from sensormesh_core.storage.schema import MEASUREMENTS_TABLE, TYPED_QUANTITIES, SqlType


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One series and where its values are stored."""

    series_id: int
    sensor_id: int
    sensor: str
    quantity: str
    unit: str

    @property
    def typed(self) -> bool:
        return self.quantity in TYPED_QUANTITIES

    @property
    def table(self) -> str:
        return TYPED_QUANTITIES[self.quantity][0].table if self.typed else MEASUREMENTS_TABLE

    @property
    def key_column(self) -> str:
        return "sensor_id" if self.typed else "series_id"

    @property
    def key(self) -> int:
        return self.sensor_id if self.typed else self.series_id

    @property
    def value_column(self) -> str:
        return self.quantity if self.typed else "value"

    @property
    def sql_type(self) -> SqlType:
        """How the values are stored: `real` for most typed quantities (see stored_floats.py)."""
        return TYPED_QUANTITIES[self.quantity][1].sql_type if self.typed else SqlType.DOUBLE

    @property
    def order_key(self) -> tuple[str, str]:
        """Position in a listing: sensor, then quantity (byte order, as SQL's COLLATE "C")."""
        return (self.sensor, self.quantity)


async def device_series(
    conn: asyncpg.Connection,
    device_id: str,
    sensors: Sequence[str] = (),
    quantities: Sequence[str] = (),
) -> list[SeriesRef]:
    """The device's series, filtered, ordered by sensor then quantity."""
    rows = await conn.fetch(
        "SELECT se.series_id, s.sensor_id, s.name, se.quantity, se.unit FROM sensors s "
        "JOIN series se USING (sensor_id) WHERE s.device_id = $1 "
        "AND (cardinality($2::text[]) = 0 OR s.name = ANY($2::text[])) "
        "AND (cardinality($3::text[]) = 0 OR se.quantity = ANY($3::text[])) "
        'ORDER BY s.name COLLATE "C", se.quantity COLLATE "C"',
        device_id,
        list(sensors),
        list(quantities),
    )
    return [SeriesRef(r["series_id"], r["sensor_id"], r["name"], r["quantity"], r["unit"]) for r in rows]
