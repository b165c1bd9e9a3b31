"""What is wrong with a request or a reading: batch-level field violations
(the whole batch is refused) and the reason a single flagged reading is
refused (protovalidate's first violation, an unknown payload, or one of the
service's own limits). Pure functions of the request and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from google.protobuf import unknown_fields
from sensormesh.v1 import ingest_pb2, reading_pb2

from ingest_service.decode import Window
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
    if len(request.readings) > limit:
        violations.append(
            FieldViolation("readings", f"at most {limit} readings per batch, got {len(request.readings)}")
        )
    return violations


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
        unknown = unknown_fields.UnknownFieldSet(reading)
        numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
        if numbers:
            return (
                "reading.payload",
                f"unknown payload (field {', '.join(map(str, numbers))}): the device's contracts are newer "
                "than this service's; the reading is kept in the dead-letter table",
            )
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
