"""What the alert evaluator reads: a device's committed values of one quantity, per sensor, as
arrays in sequence order; its inputs' states; its thinning reports; and its last readings.

A batch is found as live feeds find theirs (query_service/storage/live_rows.py): the
(sensor_id, time) indexes with a sample-time range, which also prunes partitions and chunks,
and a sequence range. A typed table's rows come back as binary COPY, every field of fixed
width, read by numpy as one structured array: no Python object per reading (the evaluator
reads back every reading ingest commits, so this is its largest cost: 55 ms of CPU per
30,000 IMU readings as records, 22 ms as COPY). Times become epoch seconds in double
precision (exact to the microsecond for this century).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np
from numpy.typing import NDArray

from sensormesh_core.storage.schema import MEASUREMENTS_TABLE, TYPED_QUANTITIES

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # binary COPY's header starts so, then flags and an extension
POSTGRES_EPOCH_MICROS = 946_684_800_000_000  # binary timestamptz counts microseconds from 2000-01-01
DEVICE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # proto/sensormesh/v1/device.proto


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
    conn: asyncpg.Connection,
    windows: Sequence[Window],
    quantities: Sequence[str],
    sensors: Sequence[str],
    names: SensorNames,
) -> dict[str, dict[str, list[SeriesValues]]]:
    """The windows' values of `quantities` (typed, or measurements' names), per device,
    quantity and sensor (only `sensors`, when given), each in sequence order. A typed table is
    read once for all the windows and all its quantities the rules watch."""
    found: dict[str, dict[str, list[SeriesValues]]] = {w.device_id: {} for w in windows}
    by_table: dict[str, list[str]] = {}
    measured = []
    for quantity in quantities:
        if quantity in TYPED_QUANTITIES:
            by_table.setdefault(TYPED_QUANTITIES[quantity][0].table, []).append(quantity)
        else:
            measured.append(quantity)
    for table, columns in by_table.items():
        for device_id, series in (await _typed(conn, windows, table, columns, sensors, names)).items():
            found[device_id] |= series
    for window in windows if measured else ():
        found[window.device_id] |= await _measured(conn, window, measured, sensors)
    return found


class SensorNames:
    """sensor_id -> (device_id, name), each looked up once: a sensor's id is never reused (an
    identity column) and its device and name never change."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[str, str]] = {}

    async def of(self, conn: asyncpg.Connection, ids: Sequence[int]) -> Mapping[int, tuple[str, str]]:
        missing = [i for i in ids if i not in self._known]
        if missing:
            rows = await conn.fetch(
                "SELECT sensor_id, device_id, name FROM sensors WHERE sensor_id = ANY($1::int[])", missing
            )
            self._known.update((row["sensor_id"], (row["device_id"], row["name"])) for row in rows)
        return self._known


async def _typed(
    conn: asyncpg.Connection,
    windows: Sequence[Window],
    table: str,
    columns: Sequence[str],
    sensors: Sequence[str],
    names: SensorNames,
) -> dict[str, dict[str, list[SeriesValues]]]:
    """One COPY for all the windows: a branch each (its own index scans), UNION ALL. A sensor
    is one device's, so rows sorted by (sensor, sequence) are each series in order, a slice
    apiece, and the sensor says whose window it is."""
    # NULL (an absent optional field) as NaN keeps every field 8 bytes wide; ingest never stores NaN.
    selected = ", ".join(f"coalesce(r.{c}::float8, 'NaN')" for c in columns)
    branches = [
        f"SELECT r.sensor_id, r.sequence, r.time, {selected} FROM {table} r "
        f"JOIN sensors s ON s.sensor_id = r.sensor_id WHERE {_window_filter(window)}"
        for window in windows
    ]
    rows = await _copy(conn, " UNION ALL ".join(branches), _row_type(len(columns)))
    if not len(rows):
        return {}
    ids = rows["sensor_id"].astype(np.int64)
    order = np.lexsort((rows["sequence"], ids))
    ids = ids[order]
    times = _epoch_seconds(rows["time"][order])
    values = [rows[f"v{position}"][order].astype(np.float64) for position in range(len(columns))]
    holes = [bool(np.isnan(v).any()) for v in values]  # only optional fields are ever NaN
    bounds = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(ids)]
    known = await names.of(conn, [int(ids[start]) for start in bounds[:-1]])
    found: dict[str, dict[str, list[SeriesValues]]] = {}
    for start, stop in itertools.pairwise(bounds):
        owner = known.get(int(ids[start]))
        if owner is None or (sensors and owner[1] not in sensors):
            continue  # None: the sensor went with its device since the COPY
        device_id, name = owner
        series = found.setdefault(device_id, {column: [] for column in columns})
        for position, column in enumerate(columns):
            t, v = times[start:stop], values[position][start:stop]
            if holes[position]:
                present = ~np.isnan(v)
                t, v = t[present], v[present]
            if len(v):
                series[column].append(SeriesValues(name, t, v))
    return found


def _window_filter(window: Window) -> str:
    """The WHERE clause of a read-back of table `r` joined to sensors `s`, its values written
    in: COPY takes no parameters (asyncpg would format them by two more round trips to the
    server). Integers and timestamps are formatted from their types; the device id is
    checked to be a DNS label (the contract's pattern), so nothing can escape its quotes."""
    if not DEVICE_ID.fullmatch(window.device_id):
        raise ValueError(f"not a device id: {window.device_id!r}")
    return (
        f"s.device_id = '{window.device_id}' "
        f"AND r.time BETWEEN {_timestamp(window.first_time)} AND {_timestamp(window.last_time)} "
        f"AND r.sequence > {int(window.after_sequence)} AND r.sequence <= {int(window.last_sequence)}"
    )


def _timestamp(moment: datetime) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"a read-back window needs aware datetimes, not {moment!r}")
    return f"'{moment.isoformat()}'::timestamptz"


def _row_type(value_columns: int) -> np.dtype[np.void]:
    """A binary COPY row of (sensor_id int4, sequence int8, time timestamptz, value float8...),
    each field after its length word, all big-endian (PostgreSQL's binary COPY format)."""
    named = [("sensor_id", ">i4"), ("sequence", ">i8"), ("time", ">i8")]
    named += [(f"v{position}", ">f8") for position in range(value_columns)]
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for name, kind in named:
        fields += [(f"{name}_length", ">i4"), (name, kind)]
    return np.dtype(fields)


def _epoch_seconds(micros: NDArray[np.int64]) -> NDArray[np.float64]:
    """Binary timestamptz values as epoch seconds: one rounding, as extract(epoch ...)::float8."""
    return (micros.astype(np.int64) + POSTGRES_EPOCH_MICROS) / 1e6


class _Buffer:
    """Collects what COPY TO STDOUT sends."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def __call__(self, data: bytes) -> None:
        self.parts.append(data)


async def _copy(conn: asyncpg.Connection, query: str, row_type: np.dtype[np.void]) -> NDArray[np.void]:
    """The query's rows, read as binary COPY into a structured array of `row_type`."""
    buffer = _Buffer()
    await conn.copy_from_query(query, output=buffer, format="binary")
    return decode_binary_copy(b"".join(buffer.parts), row_type)


def decode_binary_copy(data: bytes, row_type: np.dtype[np.void]) -> NDArray[np.void]:
    """Rows of a binary COPY whose fields all have fixed widths (no NULL), checked against
    `row_type`: a row of another shape raises ValueError rather than being misread."""
    if not data.startswith(COPY_SIGNATURE) or len(data) < len(COPY_SIGNATURE) + 10:
        raise ValueError("not PostgreSQL binary COPY data")
    start = len(COPY_SIGNATURE) + 8 + int.from_bytes(data[len(COPY_SIGNATURE) + 4 : len(COPY_SIGNATURE) + 8])
    body = memoryview(data)[start:-2]  # the trailer: a field count of -1
    if len(body) % row_type.itemsize:
        raise ValueError("binary COPY rows are not of the expected width (a NULL or another type)")
    rows = np.frombuffer(body, dtype=row_type)
    fields = [name for name in row_type.names or () if name != "fields" and not name.endswith("_length")]
    if not (rows["fields"] == len(fields)).all():
        raise ValueError(f"binary COPY rows do not have {len(fields)} fields")
    for name in fields:
        if not (rows[f"{name}_length"] == row_type[name].itemsize).all():
            raise ValueError(f"binary COPY field {name} is not {row_type[name].itemsize} bytes wide")
    return rows


async def _measured(
    conn: asyncpg.Connection, window: Window, quantities: Sequence[str], sensors: Sequence[str]
) -> dict[str, list[SeriesValues]]:
    """Generic measurements (a few a second per device: records are fine here)."""
    rows = await conn.fetch(
        f"SELECT se.quantity, s.name, extract(epoch FROM m.time)::float8, m.value::float8 FROM {MEASUREMENTS_TABLE} m "
        "JOIN series se ON se.series_id = m.series_id JOIN sensors s ON s.sensor_id = se.sensor_id "
        "WHERE s.device_id = $1 AND m.time BETWEEN $2 AND $3 AND m.sequence > $4 AND m.sequence <= $5 "
        "AND (cardinality($6::text[]) = 0 OR s.name = ANY($6::text[])) AND se.quantity = ANY($7::text[]) "
        "ORDER BY m.sequence",
        window.device_id,
        window.first_time,
        window.last_time,
        window.after_sequence,
        window.last_sequence,
        list(sensors),
        list(quantities),
    )
    found: dict[str, list[SeriesValues]] = {}
    for quantity in quantities:
        mine = [row for row in rows if row[0] == quantity]
        if mine:
            series: dict[str, tuple[list[float], list[float]]] = {}
            for _, sensor, at, value in mine:
                times, values = series.setdefault(sensor, ([], []))
                times.append(at)
                values.append(value)
            found[quantity] = [
                SeriesValues(sensor, np.array(t, dtype=np.float64), np.array(v, dtype=np.float64))
                for sensor, (t, v) in series.items()
            ]
    return found


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
