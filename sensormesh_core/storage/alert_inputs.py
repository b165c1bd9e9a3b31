"""What the alert evaluator reads: a device's committed values of one quantity, per sensor, as
arrays in sequence order; its inputs' states; its thinning reports; and its last readings.

A batch is found as live feeds find theirs (query_service/storage/live_rows.py): the
(sensor_id, time) indexes with a sample-time range, which also prunes partitions and chunks,
and a sequence range. Times come back as epoch seconds in double precision (exact to the
microsecond for this century), so whole columns go to numpy without a datetime per reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np
from numpy.typing import NDArray

from sensormesh_core.storage.schema import MEASUREMENTS_TABLE, TYPED_QUANTITIES


@dataclass(frozen=True, slots=True)
class Window:
    """A device's readings numbered in (after_sequence, last_sequence], sampled in [first_time, last_time]."""

    device_id: str
    after_sequence: int
    last_sequence: int
    first_time: datetime
    last_time: datetime


@dataclass(frozen=True, slots=True)
class SeriesValues:
    """One sensor's values of one quantity in a window, in sequence order."""

    sensor: str
    times: NDArray[np.float64]  # epoch seconds
    values: NDArray[np.float64]


def is_typed(quantity: str) -> bool:
    return quantity in TYPED_QUANTITIES


async def values(
    conn: asyncpg.Connection, window: Window, quantity: str, sensors: Sequence[str]
) -> list[SeriesValues]:
    """The window's values of `quantity` (typed, or a measurement's name), per sensor (only
    `sensors`, when given), each in sequence order."""
    if quantity in TYPED_QUANTITIES:
        table, column = TYPED_QUANTITIES[quantity]
        sql = (
            f"SELECT s.name, extract(epoch FROM r.time)::float8 AS t, r.{column.name}::float8 AS v "
            f"FROM {table.table} r JOIN sensors s ON s.sensor_id = r.sensor_id WHERE s.device_id = $1 "
            f"AND r.time BETWEEN $2 AND $3 AND r.sequence > $4 AND r.sequence <= $5 AND r.{column.name} IS NOT NULL "
            "AND (cardinality($6::text[]) = 0 OR s.name = ANY($6::text[])) ORDER BY r.sequence"
        )
        rows = await conn.fetch(sql, *_arguments(window, sensors))
    else:
        sql = (
            f"SELECT s.name, extract(epoch FROM m.time)::float8 AS t, m.value::float8 AS v FROM {MEASUREMENTS_TABLE} m "
            "JOIN series se ON se.series_id = m.series_id JOIN sensors s ON s.sensor_id = se.sensor_id "
            "WHERE s.device_id = $1 AND m.time BETWEEN $2 AND $3 AND m.sequence > $4 AND m.sequence <= $5 "
            "AND se.quantity = $7 AND (cardinality($6::text[]) = 0 OR s.name = ANY($6::text[])) ORDER BY m.sequence"
        )
        rows = await conn.fetch(sql, *_arguments(window, sensors), quantity)
    return _by_sensor(rows)


def _arguments(window: Window, sensors: Sequence[str]) -> tuple[object, ...]:
    return (
        window.device_id,
        window.first_time,
        window.last_time,
        window.after_sequence,
        window.last_sequence,
        list(sensors),
    )


def _by_sensor(rows: list[asyncpg.Record]) -> list[SeriesValues]:
    if not rows:
        return []
    names = [row[0] for row in rows]
    times = np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))
    vals = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
    found: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        found.setdefault(name, []).append(index)
    return [SeriesValues(name, times[np.asarray(idx)], vals[np.asarray(idx)]) for name, idx in found.items()]


async def known_measurement(conn: asyncpg.Connection, quantity: str) -> bool:
    """Whether any device has reported a measurement named `quantity`."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM series WHERE quantity = $1)", quantity))


async def input_states(conn: asyncpg.Connection, device_id: str) -> dict[str, bool]:
    """The device's inputs as it last reported them: name -> failing."""
    rows = await conn.fetch("SELECT input, state FROM device_inputs WHERE device_id = $1", device_id)
    return {row["input"]: row["state"] == 2 for row in rows}


async def thinning(conn: asyncpg.Connection, window: Window) -> dict[str, tuple[int, float]]:
    """Readings the device reported discarded with the window's batches: sensor -> (count,
    last discarded sample time)."""
    rows = await conn.fetch(
        "SELECT sensor, sum(count)::bigint AS n, extract(epoch FROM max(last_sample_time))::float8 AS t "
        "FROM thinning_reports WHERE device_id = $1 AND batch_last_sequence > $2 AND batch_last_sequence <= $3 "
        "GROUP BY sensor",
        window.device_id,
        window.after_sequence,
        window.last_sequence,
    )
    return {row["sensor"]: (int(row["n"]), float(row["t"])) for row in rows}


async def last_readings(
    conn: asyncpg.Connection, device_ids: Sequence[str]
) -> dict[tuple[str, str], datetime]:
    """The newest sample time of each sensor of these devices (from the latest values ingest keeps)."""
    rows = await conn.fetch(
        "SELECT s.device_id, s.name, max(lv.time) AS t FROM latest_values lv "
        "JOIN series se ON se.series_id = lv.series_id JOIN sensors s ON s.sensor_id = se.sensor_id "
        "WHERE s.device_id = ANY($1::text[]) GROUP BY s.device_id, s.name",
        list(device_ids),
    )
    return {(row["device_id"], row["name"]): row["t"] for row in rows}
