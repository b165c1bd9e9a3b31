"""The benchmark's simulated fleet: what one gateway sends, as upload batches.

Per device and second of data: 100 IMU readings (an MPU-6050 at 100 Hz,
6 samples each), 1 environment reading (BME280: temperature, humidity,
pressure), a system reading every 10 s (CPU temperature, disk used and free)
and 2 generic measurements (a soil probe and a current clamp, 1 Hz each).
Readings are numbered in time order, as an agent's buffer numbers them, and
cut into batches of `batch_size`.

Values are drawn from a seeded generator: every run sends the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, reading_pb2

IMU_HZ = 100
SYSTEM_EVERY_S = 10


@dataclass(frozen=True, slots=True)
class Fleet:
    """One device's readings, cut into batches; reused for every device of a phase."""

    batches: list[ingest_pb2.UploadReadingsRequest]
    rows: int
    samples: int


def _samples(reading: reading_pb2.Reading) -> int:
    kind = reading.WhichOneof("payload")
    if kind == "imu":
        return 6
    if kind == "measurement" or kind is None:
        return 1
    payload = getattr(reading, kind)
    return sum(1 for f in payload.DESCRIPTOR.fields if not f.has_presence or payload.HasField(f.name))


def device_readings(seconds: int, start_unix: float, seed: int = 7) -> list[reading_pb2.Reading]:
    """`seconds` of one gateway's readings from `start_unix`, in time order."""
    rng = random.Random(seed)
    readings: list[reading_pb2.Reading] = []
    base = int(start_unix)
    for second in range(seconds):
        for tick in range(IMU_HZ):
            nanos = tick * (1_000_000_000 // IMU_HZ)
            readings.append(
                reading_pb2.Reading(
                    sensor="mpu6050-0x68",
                    sample_time=Timestamp(seconds=base + second, nanos=nanos),
                    imu=reading_pb2.ImuPayload(
                        acceleration_x_mps2=rng.gauss(0.0, 0.3),
                        acceleration_y_mps2=rng.gauss(0.0, 0.3),
                        acceleration_z_mps2=rng.gauss(9.81, 0.3),
                        angular_rate_x_dps=rng.gauss(0.0, 2.0),
                        angular_rate_y_dps=rng.gauss(0.0, 2.0),
                        angular_rate_z_dps=rng.gauss(0.0, 2.0),
                    ),
                )
            )
            if tick == 0:
                readings += _slow_sensors(rng, base + second, second)
    return readings


def _slow_sensors(rng: random.Random, at: int, second: int) -> list[reading_pb2.Reading]:
    stamp = Timestamp(seconds=at, nanos=5_000_000)
    found = [
        reading_pb2.Reading(
            sensor="bme280-0x76",
            sample_time=stamp,
            environment=reading_pb2.EnvironmentPayload(
                temperature_celsius=21.5 + rng.random(),
                relative_humidity_percent=45.0 + rng.random(),
                pressure_hpa=1013.0 + rng.random(),
            ),
        ),
        reading_pb2.Reading(
            sensor="soil-probe",
            sample_time=stamp,
            measurement=reading_pb2.Measurement(name="soil_moisture", value=30 + rng.random(), unit="%"),
        ),
        reading_pb2.Reading(
            sensor="current-clamp",
            sample_time=stamp,
            measurement=reading_pb2.Measurement(name="current", value=2 + rng.random(), unit="A"),
        ),
    ]
    if second % SYSTEM_EVERY_S == 0:
        found.append(
            reading_pb2.Reading(
                sensor="system",
                sample_time=stamp,
                system=reading_pb2.SystemPayload(
                    cpu_temperature_celsius=48.0 + rng.random(),
                    disk_used_bytes=12_000_000_000 + rng.randrange(1_000_000),
                    disk_free_bytes=20_000_000_000 - rng.randrange(1_000_000),
                ),
            )
        )
    return found


def fleet(seconds: int, start_unix: float, batch_size: int) -> Fleet:
    """One device's upload: its readings numbered from 1 and cut into batches."""
    readings = device_readings(seconds, start_unix)
    batches = []
    for first in range(0, len(readings), batch_size):
        chunk = readings[first : first + batch_size]
        batch = ingest_pb2.UploadReadingsRequest(first_sequence=first + 1, last_sequence=first + len(chunk))
        for offset, reading in enumerate(chunk):
            batch.readings.add(sequence=first + 1 + offset, reading=reading)
        batches.append(batch)
    return Fleet(batches, len(readings), sum(_samples(r) for r in readings))


def serialized(batches: list[ingest_pb2.UploadReadingsRequest], device_id: str) -> list[bytes]:
    """The batches as `device_id` sends them on the wire."""
    out = []
    for batch in batches:
        batch.device_id = device_id
        out.append(batch.SerializeToString())
    return out
