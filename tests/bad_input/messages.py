"""Requests for the bad-input tests: valid readings with the current time, the
RPC paths, and ways to spoil serialized messages that a well-behaved client
library would never produce (invalid UTF-8, corrupt wire format)."""

from __future__ import annotations

import time

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import reading_pb2

INGEST = "/sensormesh.v1.IngestService/"
DEVICES = "/sensormesh.v1.DeviceService/"
QUERY = "/sensormesh.v1.QueryService/"
UPLOAD = INGEST + "UploadReadings"
WRITE = INGEST + "WriteReadings"
OFFSET = INGEST + "GetUploadOffset"

# Every float field of every payload, as (payload, field): each must be finite.
FLOAT_FIELDS = [
    *(("imu", f.name) for f in reading_pb2.ImuPayload.DESCRIPTOR.fields),
    ("environment", "temperature_celsius"),
    ("environment", "relative_humidity_percent"),
    ("environment", "pressure_hpa"),
    ("system", "cpu_temperature_celsius"),
    *(("link_health", f.name) for f in reading_pb2.LinkHealthPayload.DESCRIPTOR.fields),
    ("measurement", "value"),
]


def now_stamp(offset_s: float = -60.0) -> Timestamp:
    """A sample time `offset_s` from now (a minute ago by default: inside every limit)."""
    moment = time.time() + offset_s
    return Timestamp(seconds=int(moment), nanos=int(moment % 1 * 1e9))


def imu_reading(sensor: str = "mpu6050-0x68", offset_s: float = -60.0) -> reading_pb2.Reading:
    return reading_pb2.Reading(
        sensor=sensor,
        sample_time=now_stamp(offset_s),
        imu=reading_pb2.ImuPayload(acceleration_z_mps2=9.8, angular_rate_x_dps=1.5),
    )


def payload_reading(payload: str, sensor: str = "probe-1") -> reading_pb2.Reading:
    """A valid reading of the given payload kind."""
    reading = reading_pb2.Reading(sensor=sensor, sample_time=now_stamp())
    if payload == "imu":
        reading.imu.acceleration_z_mps2 = 9.8
    elif payload == "environment":
        reading.environment.temperature_celsius = 21.5
        reading.environment.relative_humidity_percent = 40
        reading.environment.pressure_hpa = 1013
    elif payload == "system":
        reading.system.cpu_temperature_celsius = 48.5
    elif payload == "link_health":
        reading.link_health.battery_level_percent = 87
        reading.link_health.signal_strength_dbm = -71
    else:
        reading.measurement.name, reading.measurement.value, reading.measurement.unit = "current", 1.5, "A"
    return reading


def with_invalid_utf8(message: Message, placeholder: str) -> bytes:
    """`message` serialized, with the one string `placeholder` replaced by as many 0xFF bytes
    (never valid UTF-8; the length, and so the wire format, stay intact)."""
    raw = message.SerializeToString()
    marker = placeholder.encode()
    assert raw.count(marker) == 1, f"{placeholder!r} must occur exactly once"
    return raw.replace(marker, b"\xff" * len(marker))
