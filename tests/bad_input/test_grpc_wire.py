"""Requests no client library would send: strings that are not UTF-8 and bytes
that are not a protobuf message. Protobuf refuses to parse them, before any
handler runs; the answer must still be INVALID_ARGUMENT naming the field, on
both services, directly and through Envoy. Device RPCs carry the device's
token, operator RPCs the stack's admin key."""

from __future__ import annotations

import psycopg
import pytest
from google.protobuf.message import Message
from grpc import StatusCode
from sensormesh.v1 import device_pb2, ingest_pb2, query_pb2, reading_pb2

from tests.bad_input.messages import (
    DEVICES,
    INGEST,
    OFFSET,
    QUERY,
    UPLOAD,
    WRITE,
    imu_reading,
    with_invalid_utf8,
)
from tests.bad_input.stack import Device, Outcome, Stack, client_stream, committed, first_of_stream, unary

pytestmark = pytest.mark.storage

BAD = "NOTUTF8X"  # replaced by 0xFF bytes on the wire


def _write(device: Device) -> tuple[Message, str]:
    request = ingest_pb2.WriteReadingsRequest(
        device_id=device.device_id, readings=[imu_reading(), imu_reading(BAD)]
    )
    return request, "readings[1].sensor"


def _write_unit(device: Device) -> tuple[Message, str]:
    reading = imu_reading()
    reading.measurement.name, reading.measurement.unit = "current", BAD
    return ingest_pb2.WriteReadingsRequest(
        device_id=device.device_id, readings=[reading]
    ), "readings[0].measurement.unit"


def _write_device(device: Device) -> tuple[Message, str]:
    return ingest_pb2.WriteReadingsRequest(device_id=BAD, readings=[imu_reading()]), "device_id"


def _offset(device: Device) -> tuple[Message, str]:
    return ingest_pb2.GetUploadOffsetRequest(device_id=BAD), "device_id"


def _list_sensor(device: Device) -> tuple[Message, str]:
    return query_pb2.ListReadingsRequest(device_id=device.device_id, sensors=["a", BAD]), "sensors[1]"


def _list_token(device: Device) -> tuple[Message, str]:
    return query_pb2.ListReadingsRequest(device_id=device.device_id, page_token=BAD), "page_token"


def _latest_quantity(device: Device) -> tuple[Message, str]:
    return query_pb2.GetLatestReadingsRequest(device_id=device.device_id, quantities=[BAD]), "quantities[0]"


def _get_device(device: Device) -> tuple[Message, str]:
    return device_pb2.GetDeviceRequest(device_id=BAD), "device_id"


def _create_label(device: Device) -> tuple[Message, str]:
    request = device_pb2.CreateDeviceRequest(
        device=device_pb2.Device(device_id="utf8-label", labels={"site": BAD})
    )
    return request, 'device.labels["site"]'


def _create_label_key(device: Device) -> tuple[Message, str]:
    request = device_pb2.CreateDeviceRequest(
        device=device_pb2.Device(device_id="utf8-key", labels={BAD: "x"})
    )
    return request, "device.labels"


def _update_mask(device: Device) -> tuple[Message, str]:
    request = device_pb2.UpdateDeviceRequest(device=device_pb2.Device(device_id=device.device_id))
    request.update_mask.paths.append(BAD)
    return request, "update_mask.paths[0]"


UNARY = {
    "WriteReadings sensor": (WRITE, _write),
    "WriteReadings measurement unit": (WRITE, _write_unit),
    "WriteReadings device_id": (WRITE, _write_device),
    "GetUploadOffset device_id": (OFFSET, _offset),
    "ListReadings sensors": (QUERY + "ListReadings", _list_sensor),
    "ListReadings page_token": (QUERY + "ListReadings", _list_token),
    "GetLatestReadings quantities": (QUERY + "GetLatestReadings", _latest_quantity),
    "GetDevice device_id": (DEVICES + "GetDevice", _get_device),
    "CreateDevice label value": (DEVICES + "CreateDevice", _create_label),
    "CreateDevice label key": (DEVICES + "CreateDevice", _create_label_key),
    "UpdateDevice update_mask": (DEVICES + "UpdateDevice", _update_mask),
}


def _credential(stack: Stack, device: Device, method: str) -> tuple[tuple[str, str], ...]:
    """The device's token for an ingest RPC, the admin key for an operator one."""
    return device.metadata if method.startswith(INGEST) else stack.admin_metadata


def _assert_names(outcome: Outcome, field: str) -> None:
    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.violations is not None and field in outcome.violations, outcome
    assert "UTF-8" in outcome.violations[field]


@pytest.mark.parametrize("case", UNARY, ids=list(UNARY))
def test_invalid_utf8_in_a_string_is_invalid_argument_naming_the_field(
    case: str, stack: Stack, device: Device
) -> None:
    method, build = UNARY[case]
    request, field = build(device)
    payload = with_invalid_utf8(request, BAD)
    for target in (
        stack.envoy_target,
        stack.ingest_target if method.startswith(INGEST) else stack.query_target,
    ):
        _assert_names(unary(target, method, payload, _credential(stack, device, method)), field)


def test_invalid_utf8_in_a_watch_request_is_invalid_argument(stack: Stack, device: Device) -> None:
    request = query_pb2.WatchReadingsRequest(device_id=device.device_id, sensors=[BAD])
    outcome = first_of_stream(
        stack.envoy_target, QUERY + "WatchReadings", with_invalid_utf8(request, BAD), stack.admin_metadata
    )
    _assert_names(outcome, "sensors[0]")


def _batch(device: Device, first: int, sensor: str = "mpu6050-0x68") -> ingest_pb2.UploadReadingsRequest:
    request = ingest_pb2.UploadReadingsRequest(
        device_id=device.device_id, first_sequence=first, last_sequence=first + 1
    )
    for sequence in (first, first + 1):
        request.readings.add(sequence=sequence, reading=imu_reading(sensor))
    return request


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda r: r.readings[1].reading.__setattr__("sensor", BAD), "readings[1].reading.sensor"),
        (
            lambda r: r.thinned.add(
                sensor=BAD, count=1, first_sample_time={"seconds": 1}, last_sample_time={"seconds": 1}
            ),
            "thinned[0].sensor",
        ),
        (
            lambda r: r.input_statuses.add(
                input="bme280", state=2, last_error=BAD, observe_time={"seconds": 1}
            ),
            "input_statuses[0].last_error",
        ),
    ],
    ids=["reading sensor", "thinning report sensor", "input status error"],
)
def test_an_undecodable_batch_ends_the_stream_and_keeps_the_batches_before_it(
    spoil: object, field: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    bad = _batch(device, 3)
    spoil(bad)  # type: ignore[operator]
    payloads = [
        _batch(device, 1).SerializeToString(),
        with_invalid_utf8(bad, BAD),
        _batch(device, 5).SerializeToString(),
    ]

    outcome = client_stream(stack.envoy_target, UPLOAD, payloads, device.metadata)

    _assert_names(outcome, field)
    assert committed(db, device.device_id) == 2  # the first batch, nothing after the bad one


@pytest.mark.parametrize(
    "method",
    [WRITE, OFFSET, UPLOAD, QUERY + "ListReadings", DEVICES + "CreateDevice", DEVICES + "ListDevices"],
)
def test_bytes_that_are_not_a_message_are_invalid_argument(method: str, stack: Stack, device: Device) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # a varint that never ends
    credential = _credential(stack, device, method)
    if method == UPLOAD:
        outcome = client_stream(stack.envoy_target, method, [garbage], credential)
    else:
        outcome = unary(stack.envoy_target, method, garbage, credential)
    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert "not a valid sensormesh.v1." in outcome.details


def test_unknown_fields_are_ignored_as_protobuf_intends(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    """Fields from newer contracts (numbers this service does not know) are skipped, not refused,
    except a payload kind the service cannot store (tests/bad_input/test_values.py)."""
    reading = imu_reading()
    reading.MergeFromString(b"\xa0\x01\x07")  # field 20, varint 7: unknown to Reading
    reading.imu.MergeFromString(b"\x40\x01")  # field 8 of ImuPayload
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=[reading])
    raw = request.SerializeToString() + b"\xf8\x01\x01"  # field 31 of the request itself

    outcome = unary(stack.envoy_target, WRITE, raw, device.metadata)

    assert outcome.code is StatusCode.OK, outcome
    response = ingest_pb2.WriteReadingsResponse.FromString(outcome.response)
    assert (response.accepted_count, response.rejected_count) == (1, 0)
    assert committed(db, device.device_id) == 1


def test_a_reading_that_is_not_utf8_never_reaches_the_dead_letters(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    """Undecodable means nothing of the message is trusted: not even the valid readings beside it."""
    request = ingest_pb2.WriteReadingsRequest(
        device_id=device.device_id, readings=[imu_reading(), reading_pb2.Reading(sensor=BAD)]
    )
    outcome = unary(stack.ingest_target, WRITE, with_invalid_utf8(request, BAD), device.metadata)
    assert outcome.code is StatusCode.INVALID_ARGUMENT
    row = db.execute("SELECT count(*) FROM dead_letters WHERE device_id = %s", (device.device_id,)).fetchone()
    assert row == (0,) and committed(db, device.device_id) == 0
