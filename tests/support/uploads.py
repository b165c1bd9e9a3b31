"""A gateway's uploads for tests that drive the real ingest service: numbered
readings whose values encode their sequence number (so a subscriber can tell
which reading it got, and whether it got it twice), cut into UploadReadings
batches and sent on real client streams, as the agent's uplink does.

Per sequence number n the gateway takes, in time order, 50 ms apart:
n % 10 == 0: an environment reading of sensor "bme280" (temperature (n % 10,000) / 100,
             humidity n // 10,000);
n % 10 == 5: a generic measurement of "soil" (soil_moisture = n);
otherwise:   an IMU reading of sensor "mpu" (angular rate x n % 10,000, acceleration x
             n // 10,000): values inside the contract's ranges and exact in float32.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from sensormesh_core.storage.registry import create_device

STEP_NANOS = 50_000_000


@dataclass(frozen=True)
class Gateway:
    """A registered device and its token; readings start `start_unix` seconds."""

    device_id: str
    token: str
    start_unix: int = int(time.time()) - 300

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def sample_time(self, sequence: int) -> Timestamp:
        nanos = sequence * STEP_NANOS
        return Timestamp(seconds=self.start_unix + nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)

    def reading(self, sequence: int) -> reading_pb2.Reading:
        at = self.sample_time(sequence)
        if sequence % 10 == 0:
            return reading_pb2.Reading(
                sensor="bme280",
                sample_time=at,
                environment=reading_pb2.EnvironmentPayload(
                    temperature_celsius=(sequence % 10_000) / 100,
                    relative_humidity_percent=sequence // 10_000,
                ),
            )
        if sequence % 10 == 5:
            return reading_pb2.Reading(
                sensor="soil",
                sample_time=at,
                measurement=reading_pb2.Measurement(name="soil_moisture", value=sequence, unit="%"),
            )
        return reading_pb2.Reading(
            sensor="mpu",
            sample_time=at,
            imu=reading_pb2.ImuPayload(
                angular_rate_x_dps=sequence % 10_000,
                acceleration_x_mps2=sequence // 10_000,
                acceleration_z_mps2=9.75,
            ),
        )

    def batch(self, first: int, last: int, *, skip: Iterable[int] = ()) -> ingest_pb2.UploadReadingsRequest:
        """A batch covering first..last with a reading for every number not in `skip` (thinned)."""
        skipped = set(skip)
        request = ingest_pb2.UploadReadingsRequest(
            device_id=self.device_id, first_sequence=first, last_sequence=last
        )
        for sequence in range(first, last + 1):
            if sequence not in skipped:
                request.readings.add(sequence=sequence, reading=self.reading(sequence))
        return request

    async def upload(
        self, channel: grpc.aio.Channel, batches: Iterable[ingest_pb2.UploadReadingsRequest]
    ) -> ingest_pb2.UploadReadingsResponse:
        """One UploadReadings stream carrying `batches`; its response (committed sequence)."""

        async def requests() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
            for request in batches:
                yield request

        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response: ingest_pb2.UploadReadingsResponse = await stub.UploadReadings(
            requests(), metadata=self.metadata, timeout=30
        )
        return response


def sequence_of(reading: reading_pb2.Reading) -> int:
    """The sequence number a `Gateway` reading encodes in its value."""
    kind = reading.WhichOneof("payload")
    if kind == "environment":
        env = reading.environment
        return round(env.relative_humidity_percent) * 10_000 + round(env.temperature_celsius * 100)
    if kind == "measurement":
        return round(reading.measurement.value)
    return round(reading.imu.acceleration_x_mps2) * 10_000 + round(reading.imu.angular_rate_x_dps)


G = TypeVar("G", bound=Gateway)


async def register_gateways(
    database_url: str,
    prefix: str,
    count: int,
    make: Callable[[str, str], G] = Gateway,
) -> list[G]:
    """Register devices `<prefix>-0` .. `<prefix>-<count-1>`; a gateway (`make(id, token)`) for each."""
    conn = await asyncpg.connect(database_url)
    try:
        gateways = []
        for number in range(count):
            record, token = await create_device(conn, f"{prefix}-{number}")
            gateways.append(make(record.device_id, token))
        return gateways
    finally:
        await conn.close()
