"""Readings in rows to readings in columns (`sensormesh.v1.ReadingColumns`), the
upload's columnar form: one entry per series (sensor, payload kind, for a
measurement its name and unit) and set of optional fields present, in
sequence order, with delta-encoded sequence numbers and microsecond times.

Plain Python, no numpy: the agent imports it on a Raspberry Pi. Sample times
are truncated to the microsecond (what storage keeps anyway). Readings
without a payload this contract knows cannot be put in columns; `to_columns`
raises ValueError for them (send such a batch as rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sensormesh.v1 import ingest_pb2, reading_pb2

# Per payload kind, its fields in order, and which are optional.
_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "imu": tuple((f.name, False) for f in reading_pb2.ImuPayload.DESCRIPTOR.fields),
    "environment": tuple((f.name, f.has_presence) for f in reading_pb2.EnvironmentPayload.DESCRIPTOR.fields),
    "system": tuple((f.name, True) for f in reading_pb2.SystemPayload.DESCRIPTOR.fields),
    "link_health": tuple((f.name, True) for f in reading_pb2.LinkHealthPayload.DESCRIPTOR.fields),
}


def micros_of(stamp: Any) -> int:
    """A Timestamp as microseconds since the Unix epoch (nanoseconds truncated)."""
    return int(stamp.seconds) * 1_000_000 + int(stamp.nanos) // 1000


def to_columns(readings: Iterable[reading_pb2.SequencedReading]) -> list[reading_pb2.ReadingColumns]:
    """The readings (in sequence order) as columnar entries, in order of each entry's first reading."""
    entries: dict[tuple[Any, ...], tuple[reading_pb2.ReadingColumns, list[int]]] = {}
    for item in readings:
        reading = item.reading
        kind = reading.WhichOneof("payload")
        if kind is None:
            raise ValueError(f"reading {item.sequence} has no payload this contract knows")
        payload = getattr(reading, kind)
        if kind == "measurement":
            key: tuple[Any, ...] = (reading.sensor, kind, payload.name, payload.unit)
        else:
            present = tuple(not optional or payload.HasField(name) for name, optional in _FIELDS[kind])
            key = (reading.sensor, kind, present)
        found = entries.get(key)
        if found is None:
            entry = reading_pb2.ReadingColumns(sensor=reading.sensor)
            target = getattr(entry, kind)
            if kind == "measurement":
                target.name, target.unit = payload.name, payload.unit
            else:
                target.SetInParent()
            found = entries[key] = (entry, [0, 0])
        entry, previous = found
        entry.sequence_deltas.append(item.sequence - previous[0])
        at = micros_of(reading.sample_time)
        entry.time_deltas_micros.append(at - previous[1] if previous[0] else at)
        previous[0], previous[1] = item.sequence, at
        target = getattr(entry, kind)
        if kind == "measurement":
            target.values.append(payload.value)
        else:
            for (name, _), here in zip(_FIELDS[kind], key[2], strict=True):
                if here:
                    getattr(target, name).append(getattr(payload, name))
    return [entry for entry, _ in entries.values()]


def columnar_request(request: ingest_pb2.UploadReadingsRequest) -> ingest_pb2.UploadReadingsRequest:
    """The same batch with its readings in columns."""
    converted = ingest_pb2.UploadReadingsRequest()
    converted.CopyFrom(request)
    del converted.readings[:]
    converted.columns.extend(to_columns(request.readings))
    return converted
