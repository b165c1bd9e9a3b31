"""Messages over the configured limits, over gRPC: over the 8 MiB message size
(both services, directly and through Envoy) RESOURCE_EXHAUSTED naming both
sizes; over 10,000 readings INVALID_ARGUMENT naming the limit; a stream keeps
the batches it committed before the oversized one. Device calls carry the
device's token, DeviceService calls the stack's admin key."""

from __future__ import annotations

import psycopg
import pytest
from grpc import StatusCode
from sensormesh.v1 import device_pb2, ingest_pb2

from sensormesh_core.columnar import micros_of
from tests.bad_input.messages import DEVICES, UPLOAD, WRITE, imu_reading
from tests.bad_input.stack import (
    Device,
    Stack,
    client_stream,
    committed,
    stored_count,
    unary,
    wait_for,
)

pytestmark = pytest.mark.storage

MESSAGE_LIMIT = 8 * 1024 * 1024


def _write_of_size(device: Device, size: int) -> bytes:
    reading = imu_reading()
    reading.measurement.name, reading.measurement.unit = "blob", "x"  # a small valid reading ...
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=[reading])
    request.readings[0].sensor = "s" * (size - request.ByteSize())  # ... made as large as asked
    return request.SerializeToString()


@pytest.mark.parametrize("via", ["envoy", "direct"])
def test_a_message_over_the_limit_is_resource_exhausted_naming_both_sizes(
    via: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    payload = _write_of_size(device, MESSAGE_LIMIT + 1024)
    target = stack.envoy_target if via == "envoy" else stack.ingest_target
    outcome = unary(target, WRITE, payload, device.metadata)
    assert outcome.code is StatusCode.RESOURCE_EXHAUSTED, outcome
    assert f"vs. {MESSAGE_LIMIT}" in outcome.details and str(len(payload)) in outcome.details
    assert committed(db, device.device_id) == 0

    device_request = device_pb2.CreateDeviceRequest(
        device=device_pb2.Device(device_id="huge", description="x" * (MESSAGE_LIMIT + 10))
    )
    target = stack.envoy_target if via == "envoy" else stack.query_target
    outcome = unary(
        target, DEVICES + "CreateDevice", device_request.SerializeToString(), stack.admin_metadata
    )
    assert outcome.code is StatusCode.RESOURCE_EXHAUSTED and f"vs. {MESSAGE_LIMIT}" in outcome.details, (
        outcome
    )


def test_a_message_under_the_limit_is_judged_on_its_fields(stack: Stack, device: Device) -> None:
    """The query service's limit is explicit and equal to ingest's: 5 MB is a request, not a flood."""
    request = device_pb2.CreateDeviceRequest(
        device=device_pb2.Device(device_id="big", description="x" * 5_000_000)
    )
    outcome = unary(
        stack.envoy_target, DEVICES + "CreateDevice", request.SerializeToString(), stack.admin_metadata
    )
    assert outcome.code is StatusCode.INVALID_ARGUMENT and "device.description" in (
        outcome.violations or {}
    ), outcome


def _batch(device: Device, first: int, count: int) -> ingest_pb2.UploadReadingsRequest:
    request = ingest_pb2.UploadReadingsRequest(
        device_id=device.device_id, first_sequence=first, last_sequence=first + count - 1
    )
    reading = imu_reading()
    for sequence in range(first, first + count):
        request.readings.add(sequence=sequence, reading=reading)
    return request


def test_an_oversized_batch_ends_the_stream_and_the_batches_before_it_stay(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    first = _batch(device, 1, 100).SerializeToString()
    huge = _batch(device, 101, 200_000).SerializeToString()  # about 10 MB
    assert len(huge) > MESSAGE_LIMIT
    outcome = client_stream(stack.envoy_target, UPLOAD, [first, huge], device.metadata)
    assert outcome.code is StatusCode.RESOURCE_EXHAUSTED, outcome
    wait_for(lambda: committed(db, device.device_id) == 100, "the batch before the oversized one committed")
    assert stored_count(db, device.device_id) == 100


def test_more_readings_than_a_batch_may_hold_is_invalid_argument_naming_the_limit(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    outcome = client_stream(
        stack.envoy_target, UPLOAD, [_batch(device, 1, 10_001).SerializeToString()], device.metadata
    )
    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.violations == {"readings": "at most 10000 readings per batch, got 10001"}
    outcome = client_stream(
        stack.envoy_target, UPLOAD, [_batch(device, 1, 10_000).SerializeToString()], device.metadata
    )
    assert outcome.code is StatusCode.OK, outcome
    assert committed(db, device.device_id) == 10_000


def _columns(device: Device, first: int, count: int) -> ingest_pb2.UploadReadingsRequest:
    """`count` IMU readings from `first` in one columnar entry, 10 ms apart."""
    request = ingest_pb2.UploadReadingsRequest(
        device_id=device.device_id, first_sequence=first, last_sequence=first + count - 1
    )
    entry = request.columns.add(sensor="imu-1", sequence_deltas=[first] + [1] * (count - 1))
    start = micros_of(imu_reading().sample_time)
    entry.time_deltas_micros.extend([start] + [10_000] * (count - 1))
    for field in ("acceleration_x_mps2", "acceleration_y_mps2", "acceleration_z_mps2"):
        getattr(entry.imu, field).extend([0.25] * count)
    for field in ("angular_rate_x_dps", "angular_rate_y_dps", "angular_rate_z_dps"):
        getattr(entry.imu, field).extend([1.5] * count)
    return request


def test_a_columnar_batch_is_held_to_the_same_limits(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    too_many = client_stream(
        stack.envoy_target, UPLOAD, [_columns(device, 1, 10_001).SerializeToString()], device.metadata
    )
    assert too_many.code is StatusCode.INVALID_ARGUMENT, too_many
    assert too_many.violations == {"columns": "at most 10000 readings per batch, got 10001"}
    huge = _columns(device, 10_001, 400_000).SerializeToString()
    assert len(huge) > MESSAGE_LIMIT
    first = _columns(device, 1, 10_000).SerializeToString()
    too_big = client_stream(stack.envoy_target, UPLOAD, [first, huge], device.metadata)
    assert too_big.code is StatusCode.RESOURCE_EXHAUSTED, too_big
    wait_for(
        lambda: committed(db, device.device_id) == 10_000, "the batch before the oversized one committed"
    )
    assert stored_count(db, device.device_id) == 10_000
