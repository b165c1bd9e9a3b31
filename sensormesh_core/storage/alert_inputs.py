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
    conn: asyncpg.Connection, window: Window, quantities: Sequence[str], sensors: Sequence[str]
) -> dict[str, list[SeriesValues]]:
    """The window's values of `quantities` (typed, or measurements' names), per quantity and
    sensor (only `sensors`, when given), each in sequence order. A typed table is read once
    for all its quantities the rules watch."""
    found: dict[str, list[SeriesValues]] = {}
    by_table: dict[str, list[str]] = {}
    measured = []
    for quantity in quantities:
        if quantity in TYPED_QUANTITIES:
            by_table.setdefault(TYPED_QUANTITIES[quantity][0].table, []).append(quantity)
        else:
            measured.append(quantity)
    for table, columns in by_table.items():
        found |= await _typed(conn, window, table, columns, sensors)
    if measured:
        found |= await _measured(conn, window, measured, sensors)
    return found


async def _typed(
    conn: asyncpg.Connection, window: Window, table: str, columns: Sequence[str], sensors: Sequence[str]
) -> dict[str, list[SeriesValues]]:
    selected = ", ".join(f"r.{c}::float8" for c in columns)
    rows = await conn.fetch(
        f"SELECT s.name, extract(epoch FROM r.time)::float8, {selected} FROM {table} r "
        "JOIN sensors s ON s.sensor_id = r.sensor_id WHERE s.device_id = $1 "
        "AND r.time BETWEEN $2 AND $3 AND r.sequence > $4 AND r.sequence <= $5 "
        "AND (cardinality($6::text[]) = 0 OR s.name = ANY($6::text[])) ORDER BY r.sequence",
        *_arguments(window, sensors),
    )
    if not rows:
        return {}
    names = [row[0] for row in rows]
    matrix = np.array([tuple(row)[1:] for row in rows], dtype=np.float64)  # NULL -> nan
    found = {}
    for position, column in enumerate(columns):
        present = ~np.isnan(matrix[:, position + 1])
        found[column] = _by_sensor(names, matrix[:, 0], matrix[:, position + 1], present)
    return found


async def _measured(
    conn: asyncpg.Connection, window: Window, names: Sequence[str], sensors: Sequence[str]
) -> dict[str, list[SeriesValues]]:
    rows = await conn.fetch(
        f"SELECT se.quantity, s.name, extract(epoch FROM m.time)::float8, m.value::float8 FROM {MEASUREMENTS_TABLE} m "
        "JOIN series se ON se.series_id = m.series_id JOIN sensors s ON s.sensor_id = se.sensor_id "
        "WHERE s.device_id = $1 AND m.time BETWEEN $2 AND $3 AND m.sequence > $4 AND m.sequence <= $5 "
        "AND (cardinality($6::text[]) = 0 OR s.name = ANY($6::text[])) AND se.quantity = ANY($7::text[]) "
        "ORDER BY m.sequence",
        *_arguments(window, sensors),
        list(names),
    )
    found: dict[str, list[SeriesValues]] = {}
    for name in names:
        mine = [row for row in rows if row[0] == name]
        if mine:
            times = np.fromiter((row[2] for row in mine), dtype=np.float64, count=len(mine))
            vals = np.fromiter((row[3] for row in mine), dtype=np.float64, count=len(mine))
            found[name] = _by_sensor([row[1] for row in mine], times, vals, np.ones(len(mine), dtype=bool))
    return found


def _arguments(window: Window, sensors: Sequence[str]) -> tuple[object, ...]:
    return (
        window.device_id,
        window.first_time,
        window.last_time,
        window.after_sequence,
        window.last_sequence,
        list(sensors),
    )


def _by_sensor(
    names: list[str], times: NDArray[np.float64], vals: NDArray[np.float64], present: NDArray[np.bool_]
) -> list[SeriesValues]:
    """Split the rows where `present` by sensor, keeping their order."""
    positions: dict[str, list[int]] = {}
    for index in np.flatnonzero(present):
        positions.setdefault(names[index], []).append(int(index))
    return [
        SeriesValues(name, times[np.asarray(idx)], vals[np.asarray(idx)]) for name, idx in positions.items()
    ]


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
