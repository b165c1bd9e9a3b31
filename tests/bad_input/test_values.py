"""Values at and beyond the edges, over gRPC: NaN and infinities in every float
field, sample times from 0 to past year 9999 and nanos out of range, NUL
characters (PostgreSQL text cannot hold them), unknown payloads and enum
values. A bad reading is refused alone with its field; a bad request field
refuses the request naming it; the valid readings beside them are stored."""

from __future__ import annotations

import math
import time

import psycopg
import pytest
from grpc import StatusCode
from sensormesh.v1 import device_pb2, ingest_pb2, query_pb2, reading_pb2

from tests.bad_input.messages import (
    DEVICES,
    FLOAT_FIELDS,
    QUERY,
    UPLOAD,
    WRITE,
    imu_reading,
    now_stamp,
    payload_reading,
)
from tests.bad_input.stack import Device, Outcome, Stack, client_stream, committed, stored_count, unary

pytestmark = pytest.mark.storage

NOW = int(time.time())
YEAR_1 = -62_135_596_800  # 0001-01-01T00:00:00Z, the first second a Timestamp may hold
YEAR_9999_END = 253_402_300_799  # 9999-12-31T23:59:59Z, the last


def _write(stack: Stack, device: Device, readings: list[reading_pb2.Reading]) -> Outcome:
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings)
    return unary(stack.envoy_target, WRITE, request.SerializeToString(), device.metadata)


def _response(outcome: Outcome) -> ingest_pb2.WriteReadingsResponse:
    assert outcome.code is StatusCode.OK, outcome
    return ingest_pb2.WriteReadingsResponse.FromString(outcome.response)


def test_nan_and_infinity_in_every_float_field_are_refused_by_field(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    readings, expected = [imu_reading()], {}
    for payload, field in FLOAT_FIELDS:
        for value in (math.nan, math.inf, -math.inf):
            reading = payload_reading(payload)
            setattr(getattr(reading, payload), field, value)
            expected[len(readings)] = f"reading.{payload}.{field}"
            readings.append(reading)
    readings.append(imu_reading())

    response = _response(_write(stack, device, readings))

    assert (
        (response.accepted_count, response.rejected_count) == (2, len(expected)) == (2, 3 * len(FLOAT_FIELDS))
    )
    assert {r.index: r.field for r in response.rejected} == expected
    assert all("finite" in r.reason or "greater" in r.reason for r in response.rejected), response.rejected
    assert stored_count(db, device.device_id) == 2


SAMPLE_TIMES = {
    "zero": ((0, 0), "greater than 1970-01-01"),
    "negative": ((-1, 0), "greater than 1970-01-01"),
    "year 1": ((YEAR_1, 0), "greater than 1970-01-01"),
    "before year 1": ((YEAR_1 - 1, 0), "0001-01-01"),
    "year 9999": ((YEAR_9999_END, 0), "ahead of the server's clock"),
    "after year 9999": ((YEAR_9999_END + 1, 0), "9999-12-31"),
    "huge": ((2**62, 0), "9999-12-31"),
    "negative nanos": ((NOW - 60, -1), "nanos"),
    "nanos of a whole second": ((NOW - 60, 1_000_000_000), "nanos"),
    "a day ahead": ((NOW + 86_400, 0), "ahead of the server's clock"),
    "before the floor": ((1_577_836_799, 0), "time floor"),  # 2019-12-31T23:59:59Z
    "older than retention": ((NOW - 40 * 86_400, 0), "retention"),
}


@pytest.mark.parametrize("case", SAMPLE_TIMES, ids=list(SAMPLE_TIMES))
def test_sample_times_at_the_edges_are_refused_by_field(
    case: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    (seconds, nanos), reason = SAMPLE_TIMES[case]
    edge = imu_reading()
    edge.sample_time.seconds, edge.sample_time.nanos = seconds, nanos

    response = _response(_write(stack, device, [imu_reading(), edge]))

    assert (response.accepted_count, response.rejected_count) == (1, 1)
    (rejected,) = response.rejected
    assert (rejected.index, rejected.field) == (1, "reading.sample_time")
    assert reason in rejected.reason
    assert stored_count(db, device.device_id) == 1


def test_sample_times_just_inside_the_edges_are_stored(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    edges = [imu_reading() for _ in range(3)]
    edges[0].sample_time.nanos = 999_999_999
    edges[1].sample_time.seconds = NOW + 5 * 60  # within the 10 minutes a clock may lead
    edges[2].sample_time.seconds = NOW - 29 * 86_400  # within the 30 days' retention

    assert _response(_write(stack, device, edges)).accepted_count == 3
    assert stored_count(db, device.device_id) == 3


def _batch(device: Device) -> ingest_pb2.UploadReadingsRequest:
    return ingest_pb2.UploadReadingsRequest(device_id=device.device_id, first_sequence=1, last_sequence=1)


BAD_REPORTS = {
    "thinning report before year 1": (
        lambda b: b.thinned.add(
            sensor="imu", count=3, first_sample_time={"seconds": YEAR_1 - 1}, last_sample_time=now_stamp()
        ),
        "thinned[0].first_sample_time",
    ),
    "thinning report nanos": (
        lambda b: b.thinned.add(
            sensor="imu",
            count=3,
            first_sample_time=now_stamp(),
            last_sample_time={"seconds": NOW, "nanos": -5},
        ),
        "thinned[0].last_sample_time",
    ),
    "input status after year 9999": (
        lambda b: b.input_statuses.add(input="bme280", state=1, observe_time={"seconds": 2**40}),
        "input_statuses[0].observe_time",
    ),
    "input state unknown": (
        lambda b: b.input_statuses.add(input="bme280", state=7, observe_time=now_stamp()),  # type: ignore[arg-type]
        "input_statuses[0].state",
    ),
    "input state unspecified": (
        lambda b: b.input_statuses.add(input="bme280", observe_time=now_stamp()),
        "input_statuses[0].state",
    ),
    "NUL in a thinned sensor": (
        lambda b: b.thinned.add(
            sensor="imu\x00", count=1, first_sample_time=now_stamp(), last_sample_time=now_stamp()
        ),
        "thinned[0].sensor",
    ),
    "NUL in an input name": (
        lambda b: b.input_statuses.add(input="bme\x00280", state=1, observe_time=now_stamp()),
        "input_statuses[0].input",
    ),
    "NUL in an input error": (
        lambda b: b.input_statuses.add(
            input="bme280", state=2, last_error="i2c\x00", observe_time=now_stamp()
        ),
        "input_statuses[0].last_error",
    ),
}


@pytest.mark.parametrize("case", BAD_REPORTS, ids=list(BAD_REPORTS))
def test_a_bad_report_or_status_refuses_the_batch_naming_it(
    case: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    spoil, field = BAD_REPORTS[case]
    batch = _batch(device)
    batch.readings.add(sequence=1, reading=imu_reading())
    spoil(batch)

    outcome = client_stream(stack.envoy_target, UPLOAD, [batch.SerializeToString()], device.metadata)

    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.violations is not None and field in outcome.violations, outcome
    assert committed(db, device.device_id) == 0


def test_nul_in_a_measurement_unit_refuses_that_reading_only(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    bad = payload_reading("measurement", sensor="clamp")
    bad.measurement.unit = "A\x00"
    response = _response(_write(stack, device, [imu_reading(), bad]))
    assert [(r.index, r.field) for r in response.rejected] == [(1, "reading.measurement.unit")]
    assert "NUL" in response.rejected[0].reason
    assert stored_count(db, device.device_id) == 1


def test_a_payload_from_newer_contracts_is_dead_lettered_and_the_rest_stored(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    newer = imu_reading()
    newer.ClearField("imu")
    newer.MergeFromString(b"\x7a\x02\x08\x01")  # field 15, a message: a payload kind added later
    response = _response(_write(stack, device, [newer, imu_reading()]))
    assert [(r.index, r.field) for r in response.rejected] == [(0, "reading.payload")]
    assert "unknown payload (field 15)" in response.rejected[0].reason
    assert stored_count(db, device.device_id) == 1


DEVICE_REQUESTS = {
    "unknown type": (
        "CreateDevice",
        device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="enum-type", type=9)),  # type: ignore[arg-type]
        "device.type",
    ),
    "unknown status": (
        "CreateDevice",
        device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="enum-status", status=-1)),  # type: ignore[arg-type]
        "device.status",
    ),
    "unknown status filter": ("ListDevices", device_pb2.ListDevicesRequest(status=3), "status"),  # type: ignore[arg-type]
    "NUL in a description": (
        "CreateDevice",
        device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="nul-desc", description="a\x00b")),
        "device.description",
    ),
    "NUL in a display name": (
        "UpdateDevice",
        device_pb2.UpdateDeviceRequest(device=device_pb2.Device(device_id="nul-name", display_name="\x00")),
        "device.display_name",
    ),
}


@pytest.mark.parametrize("case", DEVICE_REQUESTS, ids=list(DEVICE_REQUESTS))
def test_device_requests_with_unknown_enums_or_nul_are_invalid_argument(case: str, stack: Stack) -> None:
    method, request, field = DEVICE_REQUESTS[case]
    outcome = unary(stack.envoy_target, DEVICES + method, request.SerializeToString(), stack.admin_metadata)
    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.violations is not None and field in outcome.violations, outcome


def test_measurement_values_beyond_two_to_the_53_are_refused_and_the_rest_downsample(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    """Finite is not enough: two readings of 1e308 in one bucket sum to infinity, which
    PostgreSQL refuses ('value out of range: overflow'), so every downsampled read of the
    series failed and the rollup refresh failed for every device. Values within ±2^53 (every
    integer exact in a double) sum safely."""
    edge, readings = float(2**53), []
    for offset, value in enumerate([edge, edge, -edge, edge, 1.7e308, -1e300, edge * 2]):
        reading = payload_reading("measurement", sensor="counter")
        reading.measurement.value = value
        reading.sample_time.seconds -= offset
        readings.append(reading)

    response = _response(_write(stack, device, readings))

    assert [(r.index, r.field) for r in response.rejected] == [
        (i, "reading.measurement.value") for i in (4, 5, 6)
    ]
    assert "9007199254740992" in response.rejected[0].reason
    for seconds in (60, 3600):
        request = query_pb2.ListReadingsRequest(device_id=device.device_id, interval={"seconds": seconds})
        outcome = unary(
            stack.envoy_target, QUERY + "ListReadings", request.SerializeToString(), stack.admin_metadata
        )
        assert outcome.code is StatusCode.OK, outcome
        buckets = [
            b for s in query_pb2.ListReadingsResponse.FromString(outcome.response).series for b in s.buckets
        ]
        assert sum(b.count for b in buckets) == 4 and max(b.max for b in buckets) == edge
