"""Committed readings read back as `Reading` messages, for live feeds.

A commit signal names a device, a sequence range and a sample-time range; the
rows it covers are found through the (sensor_id, time) indexes with the time
range (which also prunes partitions and chunks) and `sequence BETWEEN`. The
replay at the start of a feed uses the same queries with a keyset cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import reading_pb2

from sensormesh_core.storage.schema import (
    MEASUREMENTS_TABLE,
    TYPED_TABLES,
    PayloadTable,
    SqlType,
)

# Upper sample-time bound of a replay: everything committed up to its sequence.
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LiveReading:
    """A reading with what subscribers filter on."""

    sequence: int
    time: datetime
    sensor: str
    quantities: frozenset[str]
    reading: reading_pb2.Reading


@dataclass(frozen=True, slots=True)
class Window:
    """Which committed rows to read: sample times and sequences, both inclusive,
    after an optional (time, sequence) cursor."""

    device_id: str
    first_time: datetime
    last_time: datetime
    first_sequence: int
    last_sequence: int


def _typed_sql(table: PayloadTable, keyset: bool) -> str:
    columns = ", ".join(f"r.{q.name}" for q in table.quantities)
    cursor = "AND r.time >= $6 AND (r.time > $6 OR r.sequence > $7)" if keyset else ""
    limit = "LIMIT $8" if keyset else ""
    return (
        f"SELECT r.time, r.sequence, s.name, {columns} FROM {table.table} r "
        "JOIN sensors s ON s.sensor_id = r.sensor_id WHERE s.device_id = $1 "
        f"AND r.time BETWEEN $2 AND $3 AND r.sequence BETWEEN $4 AND $5 {cursor} "
        f"ORDER BY r.time, r.sequence {limit}"
    )


def _measurement_sql(keyset: bool) -> str:
    cursor = "AND m.time >= $6 AND (m.time > $6 OR m.sequence > $7)" if keyset else ""
    limit = "LIMIT $8" if keyset else ""
    return (
        f"SELECT m.time, m.sequence, s.name, se.quantity, se.unit, m.value FROM {MEASUREMENTS_TABLE} m "
        "JOIN series se ON se.series_id = m.series_id JOIN sensors s ON s.sensor_id = se.sensor_id "
        "WHERE s.device_id = $1 AND m.time BETWEEN $2 AND $3 AND m.sequence BETWEEN $4 AND $5 "
        f"{cursor} ORDER BY m.time, m.sequence {limit}"
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(moment: datetime) -> Timestamp:
    """`moment` as a Timestamp, by integer arithmetic: `Timestamp.FromDatetime` goes
    through `calendar.timegm` in Python, several microseconds a reading on the live path."""
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def _typed_reading(table: PayloadTable, row: asyncpg.Record) -> LiveReading:
    present = {q.name: row[q.name] for q in table.quantities if row[q.name] is not None}
    payload_cls = type(getattr(reading_pb2.Reading(), table.payload))
    fields = {q.proto_field: present[q.name] for q in table.quantities if q.name in present}
    reading = reading_pb2.Reading(sample_time=_timestamp(row["time"]), sensor=row["name"])
    getattr(reading, table.payload).CopyFrom(payload_cls(**fields))
    return LiveReading(row["sequence"], row["time"], row["name"], frozenset(present), reading)


def _measurement_reading(row: asyncpg.Record) -> LiveReading:
    reading = reading_pb2.Reading(
        sample_time=_timestamp(row["time"]),
        sensor=row["name"],
        measurement=reading_pb2.Measurement(name=row["quantity"], value=row["value"], unit=row["unit"]),
    )
    return LiveReading(row["sequence"], row["time"], row["name"], frozenset((row["quantity"],)), reading)


def _union_sql() -> str:
    """Every reading table in one statement (one round trip per signal): values
    padded to the widest payload as float8, the payload named in `kind`."""
    width = max(len(t.quantities) for t in TYPED_TABLES)
    parts = []
    for table in TYPED_TABLES:
        values = [f"r.{q.name}::float8" for q in table.quantities]
        values += ["NULL::float8"] * (width - len(values))
        parts.append(
            f"SELECT '{table.payload}' AS kind, r.time, r.sequence, s.name, NULL::text AS quantity, "
            f"NULL::text AS unit, {', '.join(f'{v} AS v{i}' for i, v in enumerate(values))} "
            f"FROM {table.table} r JOIN sensors s ON s.sensor_id = r.sensor_id WHERE s.device_id = $1 "
            "AND r.time BETWEEN $2 AND $3 AND r.sequence BETWEEN $4 AND $5"
        )
    padding = ", ".join(f"NULL::float8 AS v{i}" for i in range(1, width))
    parts.append(
        "SELECT 'measurement', m.time, m.sequence, s.name, se.quantity, se.unit, m.value, "
        f"{padding} FROM {MEASUREMENTS_TABLE} m JOIN series se ON se.series_id = m.series_id "
        "JOIN sensors s ON s.sensor_id = se.sensor_id WHERE s.device_id = $1 "
        "AND m.time BETWEEN $2 AND $3 AND m.sequence BETWEEN $4 AND $5"
    )
    return " UNION ALL ".join(parts) + " ORDER BY sequence"


_UNION_SQL = _union_sql()


def _union_reading(row: asyncpg.Record) -> LiveReading:
    kind = row["kind"]
    sensor = row["name"]
    stamp = _timestamp(row["time"])
    if kind == "measurement":
        quantity = row["quantity"]
        reading = reading_pb2.Reading(
            sample_time=stamp,
            sensor=sensor,
            measurement=reading_pb2.Measurement(name=quantity, value=row["v0"], unit=row["unit"]),
        )
        return LiveReading(row["sequence"], row["time"], sensor, frozenset((quantity,)), reading)
    fields: dict[str, float | int] = {}
    present = []
    for column, (name, proto_field, is_integer) in zip(_VALUE_COLUMNS, _PAYLOAD_FIELDS[kind], strict=False):
        value = row[column]
        if value is not None:
            fields[proto_field] = int(value) if is_integer else value
            present.append(name)
    # One constructor call builds the payload in place (no CopyFrom of a second message).
    reading = reading_pb2.Reading(sample_time=stamp, sensor=sensor, **{kind: _PAYLOAD_TYPES[kind](**fields)})
    return LiveReading(row["sequence"], row["time"], sensor, frozenset(present), reading)


_PAYLOAD_TYPES = {
    "imu": reading_pb2.ImuPayload,
    "environment": reading_pb2.EnvironmentPayload,
    "system": reading_pb2.SystemPayload,
    "link_health": reading_pb2.LinkHealthPayload,
}
assert _PAYLOAD_TYPES.keys() == {t.payload for t in TYPED_TABLES}
# Per payload kind: (quantity, proto field, stored as bigint) in column order v0, v1, ...
_PAYLOAD_FIELDS = {
    t.payload: [(q.name, q.proto_field, q.sql_type is SqlType.BIGINT) for q in t.quantities]
    for t in TYPED_TABLES
}
_VALUE_COLUMNS = [f"v{i}" for i in range(max(len(t.quantities) for t in TYPED_TABLES))]


async def committed_readings(conn: asyncpg.Connection, window: Window) -> list[LiveReading]:
    """Every reading in `window`, in sequence (commit) order."""
    rows = await conn.fetch(
        _UNION_SQL,
        window.device_id,
        window.first_time,
        window.last_time,
        window.first_sequence,
        window.last_sequence,
    )
    return [_union_reading(row) for row in rows]


async def replay_chunk(
    conn: asyncpg.Connection,
    window: Window,
    table: PayloadTable | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[LiveReading]:
    """Up to `limit` readings of one table (None: measurements) in `window`,
    after the (time, sequence) cursor, in sample-time order."""
    after_time, after_sequence = after if after else (window.first_time, 0)
    args = (
        window.device_id,
        window.first_time,
        window.last_time,
        window.first_sequence,
        window.last_sequence,
        after_time,
        after_sequence,
        limit,
    )
    if table is None:
        return [_measurement_reading(row) for row in await conn.fetch(_measurement_sql(True), *args)]
    return [_typed_reading(table, row) for row in await conn.fetch(_typed_sql(table, True), *args)]
