"""Readings and batches for the ingest tests, with values that depend only on
the sequence number, so a test can recompute what must be stored."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, reading_pb2

START = int(time.time()) - 600  # ten minutes ago: inside every default limit


def stamp(sequence: int, start: int = START) -> Timestamp:
    """100 Hz from `start`."""
    return Timestamp(seconds=start + sequence // 100, nanos=(sequence % 100) * 10_000_000)


def acceleration(sequence: int) -> float:
    """A float32-exact value for reading `sequence`."""
    return float((sequence % 1000) - 500) / 4


def reading(sequence: int, start: int = START) -> reading_pb2.Reading:
    """Every 50th reading is an environment reading, every 25th (else) a measurement, the rest IMU."""
    at = stamp(sequence, start)
    if sequence % 50 == 0:
        return reading_pb2.Reading(
            sensor="bme280-0x76",
            sample_time=at,
            environment=reading_pb2.EnvironmentPayload(
                temperature_celsius=20 + sequence % 7, pressure_hpa=1000
            ),
        )
    if sequence % 25 == 0:
        return reading_pb2.Reading(
            sensor="soil-probe",
            sample_time=at,
            measurement=reading_pb2.Measurement(name="soil_moisture", value=sequence / 8, unit="%"),
        )
    return reading_pb2.Reading(
        sensor="mpu6050-0x68",
        sample_time=at,
        imu=reading_pb2.ImuPayload(acceleration_x_mps2=acceleration(sequence), acceleration_z_mps2=9.75),
    )


def batch(
    device_id: str, first: int, last: int, *, skip: Iterable[int] = ()
) -> ingest_pb2.UploadReadingsRequest:
    """A batch covering first..last with a reading for each number not in `skip`."""
    skipped = set(skip)
    request = ingest_pb2.UploadReadingsRequest(device_id=device_id, first_sequence=first, last_sequence=last)
    for sequence in range(first, last + 1):
        if sequence not in skipped:
            request.readings.add(sequence=sequence, reading=reading(sequence))
    return request


def batches(device_id: str, first: int, last: int, size: int) -> list[ingest_pb2.UploadReadingsRequest]:
    return [batch(device_id, start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


async def stream(
    requests: Iterable[ingest_pb2.UploadReadingsRequest],
) -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
    for request in requests:
        yield request


@dataclass(frozen=True)
class Stored:
    """What the database holds for a device's readings."""

    sequences: list[int]  # every stored sequence, sorted, duplicates kept
    acceleration_sum: float
    temperature_sum: float
    measurement_sum: float


async def stored(db: asyncpg.Connection, device_id: str) -> Stored:
    sensors = "SELECT sensor_id FROM sensors WHERE device_id = $1"
    series = f"SELECT series_id FROM series WHERE sensor_id IN ({sensors})"
    rows = await db.fetch(
        f"SELECT sequence FROM imu_readings WHERE sensor_id IN ({sensors}) "
        f"UNION ALL SELECT sequence FROM environment_readings WHERE sensor_id IN ({sensors}) "
        f"UNION ALL SELECT sequence FROM system_readings WHERE sensor_id IN ({sensors}) "
        f"UNION ALL SELECT sequence FROM link_health_readings WHERE sensor_id IN ({sensors}) "
        f"UNION ALL SELECT sequence FROM measurements WHERE series_id IN ({series})",
        device_id,
    )
    return Stored(
        sequences=sorted(r["sequence"] for r in rows),
        acceleration_sum=await db.fetchval(
            f"SELECT coalesce(sum(acceleration_x), 0) FROM imu_readings WHERE sensor_id IN ({sensors})",
            device_id,
        ),
        temperature_sum=await db.fetchval(
            f"SELECT coalesce(sum(temperature), 0) FROM environment_readings WHERE sensor_id IN ({sensors})",
            device_id,
        ),
        measurement_sum=await db.fetchval(
            f"SELECT coalesce(sum(value), 0) FROM measurements WHERE series_id IN ({series})", device_id
        ),
    )


def expected(sequences: Iterable[int]) -> Stored:
    """What `stored` must return after readings `sequences` were each stored once."""
    numbers = sorted(sequences)
    acceleration_sum = sum(acceleration(s) for s in numbers if s % 50 and s % 25)
    temperature_sum = sum(20 + s % 7 for s in numbers if s % 50 == 0)
    measurement_sum = sum(s / 8 for s in numbers if s % 50 and s % 25 == 0)
    return Stored(numbers, float(acceleration_sum), float(temperature_sum), measurement_sum)


async def mark(db: asyncpg.Connection, device_id: str) -> int:
    return int(
        await db.fetchval("SELECT committed_sequence FROM upload_offsets WHERE device_id = $1", device_id)
    )
