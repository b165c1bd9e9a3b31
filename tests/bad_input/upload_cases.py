"""Hypothesis strategies for whole uploads (UploadReadings streams, WriteReadings
calls) and the oracle: what the ingest service must answer and store.

A case is a plan drawn before the device's mark is known; `materialize` turns
it into requests numbered after the mark at run time, so every example starts
where the previous one left the device."""

from __future__ import annotations

from dataclasses import dataclass, field

from grpc import StatusCode
from hypothesis import strategies as st
from sensormesh.v1 import ingest_pb2

from tests.bad_input.messages import now_stamp
from tests.bad_input.reading_cases import ReadingCase, reading_cases

UTF8_MARK = "UTF8MARK"  # a sensor name replaced by 0xFF bytes on the wire
BATCH_DEFECTS = {
    # name: (code, field); "{i}" is the spoiled reading's index
    "malformed device id": (StatusCode.INVALID_ARGUMENT, "device_id"),
    "another device": (StatusCode.PERMISSION_DENIED, None),
    "first sequence 0": (StatusCode.INVALID_ARGUMENT, "first_sequence"),
    "last before first": (StatusCode.INVALID_ARGUMENT, "last_sequence"),
    "out of order": (StatusCode.INVALID_ARGUMENT, "readings[{i}].sequence"),
    "repeated sequence": (StatusCode.INVALID_ARGUMENT, "readings[{i}].sequence"),
    "after the last sequence": (StatusCode.INVALID_ARGUMENT, "readings[{i}].sequence"),
    "thinned nothing": (StatusCode.INVALID_ARGUMENT, "thinned[0].count"),
    "thinned without times": (StatusCode.INVALID_ARGUMENT, "thinned[0].first_sample_time"),
    "thinned backwards in time": (StatusCode.INVALID_ARGUMENT, "thinned[0]"),
    "thinned beyond bigint": (StatusCode.INVALID_ARGUMENT, "thinned[0].count"),
    "input errors beyond bigint": (StatusCode.INVALID_ARGUMENT, "input_statuses[0].error_count"),
    "last sequence beyond bigint": (StatusCode.INVALID_ARGUMENT, "last_sequence"),
    "input state unknown": (StatusCode.INVALID_ARGUMENT, "input_statuses[0].state"),
    "input without time": (StatusCode.INVALID_ARGUMENT, "input_statuses[0].observe_time"),
    "input error too long": (StatusCode.INVALID_ARGUMENT, "input_statuses[0].last_error"),
    "sensor not UTF-8": (StatusCode.INVALID_ARGUMENT, "readings[{i}].reading.sensor"),
}
HEAD_DEFECTS = {  # found by the batch's own checks, before authorization and the readings
    "malformed device id",
    "first sequence 0",
    "last before first",
    "thinned nothing",
    "thinned without times",
    "thinned backwards in time",
    "thinned beyond bigint",
    "input errors beyond bigint",
    "last sequence beyond bigint",
    "input state unknown",
    "input without time",
    "input error too long",
}
NEEDS_TWO = {"out of order", "repeated sequence"}
NEEDS_ONE = {"after the last sequence", "sensor not UTF-8"}


@dataclass(frozen=True)
class BatchCase:
    readings: list[ReadingCase]
    gaps: list[int]  # numbers skipped before each reading (thinned on the device)
    lead: int  # numbers skipped before the batch's first_sequence
    tail: int  # numbers after the last reading still covered by the batch
    reports: bool  # carry a valid thinning report and input status
    defect: str | None


@st.composite
def batch_cases(draw: st.DrawFn, *, defect: bool) -> BatchCase:
    readings = draw(st.lists(reading_cases(), max_size=8))
    chosen = None
    if defect:
        usable = [d for d in BATCH_DEFECTS if not (d in NEEDS_TWO and len(readings) < 2)]
        usable = [d for d in usable if not (d in NEEDS_ONE and not readings)]
        chosen = draw(st.sampled_from(usable))
    return BatchCase(
        readings=readings,
        gaps=draw(st.lists(st.sampled_from([0, 0, 0, 1, 3]), min_size=len(readings), max_size=len(readings))),
        lead=draw(st.sampled_from([0, 0, 2])),
        tail=draw(st.sampled_from([0, 0, 1])),
        reports=draw(st.booleans()),
        defect=chosen,
    )


@dataclass(frozen=True)
class StreamCase:
    batches: list[BatchCase]
    auth: str  # "own", "missing", "garbage", "other device's"
    via_envoy: bool


@st.composite
def stream_cases(draw: st.DrawFn) -> StreamCase:
    count = draw(st.integers(1, 4))
    spoiled_at = draw(st.one_of(st.none(), st.none(), st.integers(0, count - 1)))
    batches = [draw(batch_cases(defect=i == spoiled_at)) for i in range(count)]
    auth = draw(st.sampled_from(["own"] * 8 + ["missing", "garbage", "other device's"]))
    if auth == "other device's" and any(b.defect == "another device" for b in batches):
        auth = "own"  # that batch would be the other device's own, rightly written
    return StreamCase(batches, auth, draw(st.booleans()))


@dataclass
class Expected:
    """What the service must answer and how the device's numbers move."""

    code: StatusCode = StatusCode.OK
    named: str | None = None  # a field the error must name (INVALID_ARGUMENT)
    accepted: int = 0
    rejected: list[tuple[int, int, str]] = field(default_factory=list)  # (sequence, index, field)
    mark: int = 0


def _reports(request: ingest_pb2.UploadReadingsRequest, defect: str | None) -> None:
    thinned = request.thinned.add(sensor="mpu6050-0x68", count=5, first_sample_time=now_stamp(-900))
    thinned.last_sample_time.CopyFrom(now_stamp(-800))
    status = request.input_statuses.add(input="bme280", state=2, last_error="i2c timeout", error_count=3)
    status.observe_time.CopyFrom(now_stamp())
    if defect == "thinned nothing":
        thinned.count = 0
    elif defect == "thinned without times":
        thinned.ClearField("first_sample_time")
    elif defect == "thinned backwards in time":
        thinned.first_sample_time.CopyFrom(now_stamp(-700))
    elif defect == "thinned beyond bigint":
        thinned.count = 2**63
    elif defect == "input errors beyond bigint":
        status.error_count = 2**63
    elif defect == "input state unknown":
        status.state = 7  # type: ignore[assignment]
    elif defect == "input without time":
        status.ClearField("observe_time")
    elif defect == "input error too long":
        status.last_error = "e" * 1025


def materialize_batch(
    case: BatchCase, device_id: str, other_device_id: str, after: int
) -> tuple[ingest_pb2.UploadReadingsRequest, list[int], int | None]:
    """The request numbered after `after`, each reading's sequence, and the spoiled reading's index."""
    first = after + 1 + case.lead
    sequences, sequence = [], first - 1
    for gap in case.gaps:
        sequence += 1 + gap
        sequences.append(sequence)
    last = (sequences[-1] if sequences else first) + case.tail
    request = ingest_pb2.UploadReadingsRequest(device_id=device_id, first_sequence=first, last_sequence=last)
    for number, reading in zip(sequences, case.readings, strict=True):
        request.readings.add(sequence=number, reading=reading.reading)
    # Every defect of a report is named for it ("thinned ...", "input ..."), so a spoiled report is
    # always there to spoil, whether or not the case also drew `reports`.
    if case.reports or (case.defect or "").startswith(("thinned", "input")):
        _reports(request, case.defect)
    index = _spoil_numbers(request, case.defect, device_id, other_device_id)
    return request, sequences, index


def _spoil_numbers(
    request: ingest_pb2.UploadReadingsRequest, defect: str | None, device_id: str, other_device_id: str
) -> int | None:
    readings, index = request.readings, None
    if defect == "malformed device id":
        request.device_id = "Greenhouse_Pi"
    elif defect == "another device":
        request.device_id = other_device_id
    elif defect == "first sequence 0":
        request.first_sequence = 0
    elif defect == "last before first":
        request.last_sequence = request.first_sequence - 1
    elif defect == "last sequence beyond bigint":
        request.last_sequence = 2**63
    elif defect == "out of order":
        index = len(readings) - 1
        readings[index - 1].sequence, readings[index].sequence = (
            readings[index].sequence,
            readings[index - 1].sequence,
        )
    elif defect == "repeated sequence":
        index = len(readings) - 1
        readings[index].sequence = readings[index - 1].sequence
    elif defect == "after the last sequence":
        index = len(readings) - 1
        readings[index].sequence = request.last_sequence + 1
    elif defect == "sensor not UTF-8":
        index = len(readings) - 1
        readings[index].reading.sensor = UTF8_MARK
    return index


Built = tuple[ingest_pb2.UploadReadingsRequest, list[int], int | None]


def _refusal(case: StreamCase, position: int, built: Built) -> tuple[StatusCode, str | None] | None:
    """Why batch `position` ends the stream, in the order the service checks: parsing,
    the batch's own fields, the device id staying the same, authorization, the numbers."""
    defect = case.batches[position].defect
    _, _, index = built
    if defect == "sensor not UTF-8" or defect in HEAD_DEFECTS:
        code, field_ = BATCH_DEFECTS[defect]
        return code, field_.format(i=index) if field_ else None
    if defect == "another device" and position > 0:
        return StatusCode.INVALID_ARGUMENT, "device_id"
    if defect == "another device" or case.auth == "other device's":
        return StatusCode.PERMISSION_DENIED, None
    if defect is not None:
        code, field_ = BATCH_DEFECTS[defect]
        return code, field_.format(i=index) if field_ else None
    return None


def expect_stream(case: StreamCase, built: list[Built], mark: int) -> Expected:
    """The stream's answer, and what is committed: every batch before the one that ends it."""
    if case.auth in ("missing", "garbage"):
        return Expected(StatusCode.UNAUTHENTICATED, mark=mark)
    total = Expected(mark=mark)
    for position, (batch, made) in enumerate(zip(case.batches, built, strict=True)):
        refusal = _refusal(case, position, made)
        if refusal is not None:
            total.code, total.named = refusal
            return total
        request, sequences, _ = made
        for i, (number, reading) in enumerate(zip(sequences, batch.readings, strict=True)):
            if reading.valid:
                total.accepted += 1
            else:
                assert reading.expected_field is not None
                total.rejected.append((number, i, reading.expected_field))
        total.mark = request.last_sequence
    return total


@dataclass(frozen=True)
class WriteCase:
    readings: list[ReadingCase]
    numbering: str  # "service" (first_sequence 0) or "device" (after the mark)
    defect: str | None  # "malformed device id", "another device", "no readings", "numbers run out"
    auth: str
    via_envoy: bool


@st.composite
def write_cases(draw: st.DrawFn, *, max_readings: int = 8) -> WriteCase:
    defects = ["malformed device id", "another device", "no readings", "numbers run out"]
    defect = None if draw(st.integers(0, 9)) < 8 else draw(st.sampled_from(defects))
    readings = (
        [] if defect == "no readings" else draw(st.lists(reading_cases(), min_size=1, max_size=max_readings))
    )
    auth = draw(st.sampled_from(["own"] * 8 + ["missing", "garbage", "other device's"]))
    if auth == "other device's" and defect == "another device":
        auth = "own"  # the call would be the other device's own, rightly written
    return WriteCase(
        readings=readings,
        numbering=draw(st.sampled_from(["service", "device"])),
        defect=defect,
        auth=auth,
        via_envoy=draw(st.booleans()),
    )


def expect_write(case: WriteCase, mark: int) -> Expected:
    """The outcome of a WriteReadings call on a device whose mark is `mark`; `field` of an
    all-refused call is one of the per-reading fields (all are checked by the caller)."""
    if case.auth in ("missing", "garbage"):
        return Expected(StatusCode.UNAUTHENTICATED, mark=mark)
    if case.defect == "malformed device id":
        return Expected(StatusCode.INVALID_ARGUMENT, "device_id", mark=mark)
    if case.defect == "no readings":
        return Expected(StatusCode.INVALID_ARGUMENT, "readings", mark=mark)
    if case.defect == "numbers run out":
        return Expected(StatusCode.INVALID_ARGUMENT, "first_sequence", mark=mark)
    if case.defect == "another device" or case.auth == "other device's":
        return Expected(StatusCode.PERMISSION_DENIED, mark=mark)
    first = mark + 1
    expected = Expected(mark=mark + len(case.readings))
    for i, reading in enumerate(case.readings):
        if reading.valid:
            expected.accepted += 1
        else:
            assert reading.expected_field is not None
            expected.rejected.append((first + i, i, reading.expected_field))
    if not expected.accepted:
        first_field = expected.rejected[0][2].removeprefix("reading.")
        return Expected(StatusCode.INVALID_ARGUMENT, f"readings[0].{first_field}", mark=mark)
    return expected


def write_request(
    case: WriteCase, device_id: str, other_device_id: str, mark: int
) -> ingest_pb2.WriteReadingsRequest:
    request = ingest_pb2.WriteReadingsRequest(
        device_id=device_id, readings=[r.reading for r in case.readings]
    )
    if case.numbering == "device":
        request.first_sequence = mark + 1
    if case.defect == "malformed device id":
        request.device_id = "Greenhouse_Pi"
    elif case.defect == "another device":
        request.device_id = other_device_id
    elif case.defect == "numbers run out":
        request.first_sequence = 2**63  # beyond PostgreSQL's bigint
    return request
