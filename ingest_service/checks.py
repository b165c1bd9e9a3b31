"""What is wrong with a request or a reading: batch-level field violations
(the whole batch is refused) and the reason a single flagged reading is
refused (protovalidate's first violation, an unknown payload, or one of the
service's own limits). Pure functions of the request and the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from google.protobuf import unknown_fields
from sensormesh.v1 import ingest_pb2, reading_pb2

from ingest_service.columns import FIELDS, Entry
from ingest_service.decode import MAX_BATCH_VIOLATIONS, Window
from ingest_service.pg_time import PG_EPOCH_UNIX_MICROS, from_unix, micros, to_datetime
from ingest_service.rules import ReadingRules
from ingest_service.settings import IngestSettings
from sensormesh_core import validation
from sensormesh_core.errors import FieldViolation

BIGINT_MAX = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The sample-time window for one batch, in PostgreSQL microseconds."""

    floor: int  # the configured time floor
    retention: int  # now - retention
    future: int  # now + future tolerance
    fast: Window  # what the hot loop accepts without asking


def limits(now_unix: float, settings: IngestSettings, rules: ReadingRules | None) -> Limits:
    """The sample-time window of a batch prepared at `now_unix`."""
    now = int(now_unix * 1_000_000) - PG_EPOCH_UNIX_MICROS
    floor = micros(settings.ingest_time_floor)
    retention = now - settings.retention // timedelta(microseconds=1)
    future = now + settings.ingest_future_tolerance // timedelta(microseconds=1)
    after = 0
    if rules is not None:
        seconds, nanos = rules.time_after
        after = from_unix(seconds, nanos) + 1  # strictly after, whatever the truncation
    return Limits(floor, retention, future, Window(max(floor, retention, after), future))


def upload_head_violations(
    request: ingest_pb2.UploadReadingsRequest, settings: IngestSettings
) -> list[FieldViolation]:
    """The batch's own fields (not its readings): device id, range, size, reports. The contract's
    rules keep sequence numbers and counts within the database's bigint."""
    head = ingest_pb2.UploadReadingsRequest(
        device_id=request.device_id,
        first_sequence=request.first_sequence,
        last_sequence=request.last_sequence,
        thinned=request.thinned,
        input_statuses=request.input_statuses,
    )
    violations = validation.violations(head)
    limit = settings.ingest_max_batch_readings
    count = len(request.readings)
    if request.columns:
        if count:
            violations.append(FieldViolation("columns", "a batch carries readings or columns, not both"))
        count += sum(len(c.sequence_deltas) for c in request.columns)
    if count > limit:
        field = "columns" if request.columns else "readings"
        violations.append(FieldViolation(field, f"at most {limit} readings per batch, got {count}"))
    return violations


# Sums of deltas checked exactly (in Python integers) beyond this: float64 sums are exact to 2^53.
_FLOAT_SAFE = float(1 << 52)


def column_arrays(columns: Sequence[Any], first: int, last: int) -> tuple[list[Entry], list[FieldViolation]]:
    """A columnar batch's entries as arrays, and what makes the batch malformed: arrays of
    different lengths, sequence numbers not strictly increasing, outside [first, last] or
    in two entries, times beyond what a signed 64-bit microsecond count holds. Vectorised:
    the contract's CEL and per-item rules, enforced on whole arrays (protovalidate costs
    about 0.5 µs per reading on them). Value ranges are not checked here: a value out of
    range refuses its reading alone (columns.py)."""
    entries: list[Entry] = []
    violations: list[FieldViolation] = []
    for index, message in enumerate(columns):
        path = f"columns[{index}]"
        found = _entry_violations(path, message, first, last)
        if isinstance(found, Entry):
            found.index = index
            entries.append(found)
        else:
            violations += found
        if len(violations) >= MAX_BATCH_VIOLATIONS:
            return entries, violations
    if len(entries) > 1 and not violations:
        violations += _shared_sequences(entries)
    return entries, violations


def _entry_violations(path: str, message: Any, first: int, last: int) -> Entry | list[FieldViolation]:
    deltas = np.array(message.sequence_deltas, dtype=np.uint64)
    count = len(deltas)
    if count == 0:
        return [FieldViolation(f"{path}.sequence_deltas", "at least one reading is required")]
    found: list[FieldViolation] = []
    if len(message.time_deltas_micros) != count:
        found.append(_length(f"{path}.time_deltas_micros", len(message.time_deltas_micros), count, False))
    kind = message.WhichOneof("payload")
    values: list[Any] = []
    if kind is not None:
        payload = getattr(message, kind)
        for name, optional, dtype in FIELDS[kind]:
            array = getattr(payload, name)
            if len(array) != count and not (optional and len(array) == 0):
                found.append(_length(f"{path}.{kind}.{name}", len(array), count, optional))
            values.append(np.array(array, dtype=dtype) if len(array) else None)
    zeros = np.flatnonzero(deltas == 0)
    if len(zeros):
        found.append(
            FieldViolation(
                f"{path}.sequence_deltas[{zeros[0]}]",
                "must be at least 1 (sequence numbers strictly increase within an entry)",
            )
        )
    if found:
        return found
    if float(deltas.astype(np.float64).sum()) > _FLOAT_SAFE:
        total = sum(map(int, message.sequence_deltas))  # rare: exact, beyond float64's integers
        if total > last:
            return [_outside(path, int(message.sequence_deltas[0]), total, first, last)]
    sequence = np.cumsum(deltas).astype(np.int64)
    if sequence[0] < first or sequence[-1] > last:
        return [_outside(path, int(sequence[0]), int(sequence[-1]), first, last)]
    steps = np.array(message.time_deltas_micros, dtype=np.int64)
    if float(np.abs(steps.astype(np.float64)).sum()) > _FLOAT_SAFE * 1024:  # 2^62: cumsum cannot wrap
        return [FieldViolation(f"{path}.time_deltas_micros", "times beyond ±2^62 microseconds")]
    return Entry(0, kind, sequence, np.cumsum(steps), tuple(values))


def _length(field: str, got: int, count: int, optional: bool) -> FieldViolation:
    want = f"{count} (one per sequence_deltas element){' or none' if optional else ''}"
    return FieldViolation(field, f"has {got} elements, must have {want}")


def _outside(path: str, low: int, high: int, first: int, last: int) -> FieldViolation:
    return FieldViolation(
        f"{path}.sequence_deltas",
        f"sequence numbers {low}..{high} must lie within the batch's first_sequence..last_sequence {first}..{last}",
    )


def _shared_sequences(entries: list[Entry]) -> list[FieldViolation]:
    """A sequence number names one reading: no two entries may carry it."""
    every = np.concatenate([e.sequence for e in entries])
    ordered = np.sort(every)
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(repeated):
        return []
    shared = ordered[repeated[0]]
    holders = [e.index for e in entries if np.any(e.sequence == shared)]
    return [
        FieldViolation(
            f"columns[{holders[-1]}].sequence_deltas",
            f"sequence {shared} is also in columns[{holders[0]}]: each number names one reading",
        )
    ]


def write_head_violations(
    request: ingest_pb2.WriteReadingsRequest, settings: IngestSettings
) -> list[FieldViolation]:
    """The call's own fields (not its readings): device id, count, numbering."""
    count = len(request.readings)
    head = ingest_pb2.WriteReadingsRequest(device_id=request.device_id, first_sequence=request.first_sequence)
    # Readings are checked one by one; only the head's own rules count here.
    violations = [v for v in validation.violations(head) if not v.field.startswith("readings")]
    violations += _count_violations(count, settings)
    if (request.first_sequence or 1) + count - 1 > BIGINT_MAX:
        violations.append(
            FieldViolation("first_sequence", f"first_sequence + readings must stay below {BIGINT_MAX}")
        )
    return violations


def _count_violations(count: int, settings: IngestSettings) -> list[FieldViolation]:
    limit = settings.ingest_max_batch_readings
    if count > limit:
        return [FieldViolation("readings", f"at most {limit} readings per batch, got {count}")]
    if count == 0:
        return [FieldViolation("readings", "at least one reading is required")]
    return []


def reading_problem(
    item: reading_pb2.SequencedReading, limits: Limits, settings: IngestSettings
) -> tuple[str, str] | None:
    """Why a reading is refused: the first violated rule, or a service limit; None if valid."""
    reading = item.reading
    if reading.WhichOneof("payload") is None:
        unknown = unknown_payload(reading)
        if unknown is not None:
            return "reading.payload", unknown
    try:
        found = validation.violations(item)
    except Exception as exc:  # protovalidate failing on a value is still a refusal
        return "reading", f"could not be validated: {exc}"
    if found:
        reason = (
            "; ".join(f"{v.field}: {v.description}" for v in found)
            if len(found) > 1
            else found[0].description
        )
        return found[0].field, reason
    return _limit_problem(item, limits, settings)


def unknown_payload(message: Any) -> str | None:
    """Why a reading (or a columnar entry) with no payload this service knows is refused, when it
    carries fields of newer contracts; None if it carries none."""
    unknown = unknown_fields.UnknownFieldSet(message)
    numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
    if not numbers:
        return None
    return (
        f"unknown payload (field {', '.join(map(str, numbers))}): the device's contracts are newer "
        "than this service's; the reading is kept in the dead-letter table"
    )


def _limit_problem(
    item: reading_pb2.SequencedReading, limits: Limits, settings: IngestSettings
) -> tuple[str, str] | None:
    reading = item.reading
    stamp = reading.sample_time
    at = from_unix(stamp.seconds, stamp.nanos)
    shown = to_datetime(at).isoformat()
    if at < limits.floor:
        floor = settings.ingest_time_floor.isoformat()
        return (
            "reading.sample_time",
            f"{shown} is before the time floor {floor} (is the device's clock set?)",
        )
    if at < limits.retention:
        return (
            "reading.sample_time",
            f"{shown} is older than the retention period ({settings.retention})",
        )
    if at > limits.future:
        ahead = settings.ingest_future_tolerance
        return "reading.sample_time", f"{shown} is more than {ahead} ahead of the server's clock"
    if reading.WhichOneof("payload") == "system":
        for name in ("disk_used_bytes", "disk_free_bytes"):
            if getattr(reading.system, name) > BIGINT_MAX:
                return f"reading.system.{name}", f"must be at most {BIGINT_MAX}"
    return None
