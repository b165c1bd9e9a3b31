"""The hot path of a columnar upload (`UploadReadingsRequest.columns`): each
entry's packed arrays to numpy, the contracts' rules checked on whole arrays,
and a `ColumnBlock` per entry, without a Python object per reading.

What the row path does per reading, this does per entry: names are checked
when a sensor or series is first met (`ReadingRules.names_ok`), ids looked up
once, ranges and the time window compared as arrays (the same bounds
`rules.py` reads from the contracts; NaN fails every comparison, as in
`decode.py`). An element that fails is *flagged*: `prepare.py` rebuilds it as
a row-form `SequencedReading` (`element_reading`) and sends it through the row
path's slow path, so it is refused for exactly the reasons, and kept in
`dead_letters` in exactly the form, of the same reading sent as a row.

Upstream, `checks.column_arrays` has turned the entries into arrays and
refused malformed ones (lengths, sequence order and range) for the whole
batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import reading_pb2

from ingest_service.batch import ColumnBlock, Row
from ingest_service.catalog import DeviceCatalog
from ingest_service.decode import Decoded, Window
from ingest_service.pg_time import PG_EPOCH_UNIX_MICROS
from ingest_service.rules import FloatRange, ReadingRules
from sensormesh_core.storage.schema import LINK_HEALTH, MEASUREMENTS_TABLE, TYPED_BY_PAYLOAD

# Per payload kind: (field, optional, numpy type of the packed array), in storage column order.
FIELDS: dict[str, tuple[tuple[str, bool, type[np.generic]], ...]] = {
    **{
        kind: tuple(
            (q.proto_field, not q.required, np.uint64 if q.sql_type == "bigint" else np.float32)
            for q in schema.quantities
        )
        for kind, schema in TYPED_BY_PAYLOAD.items()
    },
    "measurement": (("values", False, np.float64),),
}
_BIGINT_LIMIT = np.uint64(1 << 63)


@dataclass(slots=True)
class Entry:
    """One ReadingColumns entry as arrays (after the whole-batch checks)."""

    index: int  # in `columns`
    kind: str | None  # None: no payload this service knows
    sequence: npt.NDArray[np.int64]  # absolute, strictly increasing
    time: npt.NDArray[np.int64]  # microseconds since the Unix epoch
    values: tuple[npt.NDArray[Any] | None, ...]  # per FIELDS[kind], None where empty


@dataclass(slots=True)
class ColumnsDecoded:
    """What the columnar decoder made of a batch: `out` as the row decoder's
    (its rows hold only readings the slow path passes later), plus the blocks,
    the elements flagged (entry, element) and the entries whose ids are new."""

    out: Decoded
    flagged: list[tuple[int, int]]
    pending: list[int]


def ranges(rules: ReadingRules) -> dict[str, tuple[FloatRange | None, ...]]:
    """Per payload kind, the range of each field in FIELDS order (None: disk sizes)."""
    return {
        "imu": rules.imu,
        "environment": (rules.temperature, rules.relative_humidity, rules.pressure),
        "system": (rules.cpu_temperature, None, None),
        "link_health": rules.link_health,
        "measurement": (rules.measurement_value,),
    }


def names_ok(rules: ReadingRules, sensor: str, columns: Any, kind: str) -> bool:
    """The entry's names (sensor; a measurement's name and unit) pass the contracts' rules."""
    if not rules.sensor.ok(sensor):
        return False
    if kind == "measurement":
        m = columns.measurement
        return rules.measurement_name.ok(m.name) and rules.measurement_unit.ok(m.unit)
    return True


def key_of(device: DeviceCatalog, sensor: str, columns: Any, kind: str) -> int | None:
    """The sensor id (typed) or series id (measurement) the entry's rows carry; None if new."""
    if kind == "measurement":
        return device.measurements.get((sensor, columns.measurement.name))
    return device.typed[kind].get(sensor)


def decode_entries(
    entries: Iterable[Entry],
    columns: Any,
    device: DeviceCatalog,
    rules: ReadingRules,
    window: Window,
    decoded: ColumnsDecoded,
) -> None:
    """Entries to blocks in `decoded.out.blocks`; flagged elements and new ids noted."""
    bounds = ranges(rules)
    lo, hi = np.int64(window.lo + PG_EPOCH_UNIX_MICROS), np.int64(window.hi + PG_EPOCH_UNIX_MICROS)
    out = decoded.out
    for entry in entries:
        message = columns[entry.index]
        kind = entry.kind
        # In the row decoder's order, so that the same sensors and series are created:
        # the payload kind, the time window, then the ids (new ones only for valid names,
        # and only if a reading is in the window), then the values. A payload with no field
        # at all (system_payload.not_empty) is refused after its sensor is created, as there.
        good = (entry.time >= lo) & (entry.time <= hi)
        if kind is None or not good.any() or not names_ok(rules, message.sensor, message, kind):
            decoded.flagged += [(entry.index, j) for j in range(len(entry.sequence))]
            continue
        key = key_of(device, message.sensor, message, kind)
        if key is None:
            decoded.pending.append(entry.index)
            continue
        if _empty(entry):
            decoded.flagged += [(entry.index, j) for j in range(len(entry.sequence))]
            continue
        for values, bound in zip(entry.values, bounds[kind], strict=True):
            if values is None:
                continue
            if bound is None:  # a disk size: must fit a bigint
                good &= values < _BIGINT_LIMIT
            else:
                good &= (values >= np.float64(bound.lo)) & (values <= np.float64(bound.hi))
        if not good.all():
            decoded.flagged += [(entry.index, int(j)) for j in np.flatnonzero(~good)]
            if not good.any():
                continue
            entry = _select(entry, good)
        table = MEASUREMENTS_TABLE if kind == "measurement" else TYPED_BY_PAYLOAD[kind].table
        block = ColumnBlock(
            table,
            key,
            entry.time - PG_EPOCH_UNIX_MICROS,
            entry.sequence,
            tuple(
                None if v is None else v.astype(np.int64) if v.dtype == np.uint64 else v for v in entry.values
            ),
        )
        out.blocks.append(block)
        _note_newest(out, block)


def _empty(entry: Entry) -> bool:
    return all(v is None for v in entry.values)


def _select(entry: Entry, mask: npt.NDArray[np.bool_]) -> Entry:
    return Entry(
        entry.index,
        entry.kind,
        entry.sequence[mask],
        entry.time[mask],
        tuple(None if v is None else v[mask] for v in entry.values),
    )


def _note_newest(out: Decoded, block: ColumnBlock) -> None:
    """The block's newest row (greatest time, then sequence) as a latest-value candidate,
    merged with the others of its key as the row decoder does."""
    times = block.time
    newest = times.max()
    index = (
        len(times) - 1 - int(np.argmax(times[::-1] == newest))
    )  # the last of the newest: greatest sequence
    row: Row = block.row(index)
    if block.table == LINK_HEALTH.table:
        out.link_newest.append(row)  # taken per quantity with the other rows (prepare.py)
        return
    latest = out.latest[block.table]
    found = latest.get(block.key)
    if found is None or (row[0], row[1]) >= (found[0], found[1]):
        latest[block.key] = row


def element_reading(message: Any, entry: Entry, element: int) -> reading_pb2.SequencedReading:
    """Element `element` of an entry as the row form's SequencedReading (for the slow path)."""
    at = int(entry.time[element])
    reading = reading_pb2.Reading(
        sensor=message.sensor, sample_time=Timestamp(seconds=at // 1_000_000, nanos=at % 1_000_000 * 1000)
    )
    kind = entry.kind
    if kind == "measurement":
        m = message.measurement
        reading.measurement.name, reading.measurement.unit = m.name, m.unit
        reading.measurement.value = float(entry.values[0][element])  # type: ignore[index]
    elif kind is not None:
        payload = getattr(reading, kind)
        payload.SetInParent()
        for (name, _, _), values in zip(FIELDS[kind], entry.values, strict=True):
            if values is not None:
                setattr(payload, name, values[element].item())
    return reading_pb2.SequencedReading(sequence=int(entry.sequence[element]), reading=reading)


def column_field(path: str, field: str, element: int) -> str:
    """A row-form rejection's field (`reading.imu.acceleration_x_mps2`) as the path of the
    element in its entry (`columns[2].imu.acceleration_x_mps2[17]`)."""
    if field == "sequence":
        return f"{path}.sequence_deltas[{element}]"
    inner = field.removeprefix("reading").removeprefix(".")
    if inner.startswith("sample_time"):
        return f"{path}.time_deltas_micros[{element}]"
    if inner in ("sensor", "measurement.name", "measurement.unit"):
        return f"{path}.{inner}"
    if inner == "measurement.value":
        return f"{path}.measurement.values[{element}]"
    parts = inner.split(".")
    if len(parts) == 2 and parts[0] in FIELDS:
        return f"{path}.{inner}[{element}]"
    return f"{path}.{inner or 'payload'}"
