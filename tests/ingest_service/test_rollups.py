"""Ingest keeps the plain-PostgreSQL rollups: late rows are recorded with their
batch, and the service refreshes the rollups on its own. (On TimescaleDB the
extension's invalidation log and refresh policies do this: see test_timescaledb.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from ingest_service.server import IngestServer
from ingest_service.settings import IngestSettings
from sensormesh_core.columnar import columnar_request
from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import START, reading

pytestmark = [pytest.mark.storage, pytest.mark.partitioned_only]


def _write(device: Device, first: int, last: int, start: int) -> ingest_pb2.WriteReadingsRequest:
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, first_sequence=first)
    request.readings.extend(reading(s, start) for s in range(first, last + 1))
    return request


async def test_a_late_batch_records_its_rows_per_table_and_key(
    db: asyncpg.Connection, stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    await stub.WriteReadings(_write(device, 1, 200, START), metadata=device.metadata)  # ten minutes old

    rows = await db.fetch(
        "SELECT i.source_table, i.key, i.first_time, i.last_time FROM rollup_invalidations i ORDER BY 1"
    )
    expected = await db.fetch(
        "SELECT 'environment_readings' AS t, sensor_id AS key, min(time), max(time) FROM environment_readings GROUP BY 2 "
        "UNION ALL SELECT 'imu_readings', sensor_id, min(time), max(time) FROM imu_readings GROUP BY 2 "
        "UNION ALL SELECT 'measurements', series_id, min(time), max(time) FROM measurements GROUP BY 2 ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
    assert len(rows) == 3


async def test_a_late_columnar_batch_records_its_rows_per_table_and_key(
    db: asyncpg.Connection, stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    rows = _write(device, 1, 200, START)  # ten minutes old
    upload = ingest_pb2.UploadReadingsRequest(device_id=device.device_id, first_sequence=1, last_sequence=200)
    upload.readings.extend(
        reading_pb2.SequencedReading(sequence=i + 1, reading=r) for i, r in enumerate(rows.readings)
    )
    await stub.UploadReadings(iter([columnar_request(upload)]), metadata=device.metadata)

    recorded = await db.fetch(
        "SELECT i.source_table, i.key, i.first_time, i.last_time FROM rollup_invalidations i ORDER BY 1"
    )
    expected = await db.fetch(
        "SELECT 'environment_readings' AS t, sensor_id AS key, min(time), max(time) FROM environment_readings GROUP BY 2 "
        "UNION ALL SELECT 'imu_readings', sensor_id, min(time), max(time) FROM imu_readings GROUP BY 2 "
        "UNION ALL SELECT 'measurements', series_id, min(time), max(time) FROM measurements GROUP BY 2 ORDER BY 1"
    )
    assert [tuple(r) for r in recorded] == [tuple(r) for r in expected]
    assert await db.fetchval("SELECT count(*) FROM imu_readings") == 200 - 4 - 4


async def test_a_recent_batch_records_nothing(
    db: asyncpg.Connection, stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    await stub.WriteReadings(_write(device, 1, 200, int(time.time()) - 5), metadata=device.metadata)

    assert await db.fetchval("SELECT count(*) FROM imu_readings") > 0
    assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 0


@pytest.fixture
def ingest_settings(ingest_settings: IngestSettings) -> IngestSettings:
    ingest_settings.ingest_rollup_refresh_interval = timedelta(milliseconds=200)
    return ingest_settings


async def test_the_service_refreshes_the_rollups(
    db: asyncpg.Connection,
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    register: Callable[[str], Awaitable[Device]],
) -> None:
    device = await register("pi-rollups")
    await stub.WriteReadings(_write(device, 1, 500, START), metadata=device.metadata)
    deadline = time.monotonic() + 20
    while await db.fetchval("SELECT count(*) FROM rollup_invalidations") or not await db.fetchval(
        "SELECT count(*) FROM imu_readings_1m"
    ):
        assert time.monotonic() < deadline, "the rollups were not refreshed"
        await asyncio.sleep(0.05)
    horizon = await db.fetchval("SELECT watermark FROM rollup_watermarks WHERE rollup = 'imu_readings_1m'")
    assert datetime.now(UTC) - timedelta(minutes=5) < horizon
    count = await db.fetchval(
        "SELECT sum(acceleration_x_count) FROM imu_readings_1m WHERE bucket < $1", horizon
    )
    assert count == await db.fetchval("SELECT count(*) FROM imu_readings WHERE time < $1", horizon)
