"""Downsampled ListReadings served from the rollups gives what `date_bin` over
the raw rows gives: whole buckets from the rollups, cut edges, the tail past
the watermark and buckets with late rows from the raw table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc

from query_service.storage.series import device_series
from query_service.storage.stored_floats import mean_as_sent, value_sql
from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.continuous_aggregates import refresh_continuous_aggregates
from sensormesh_core.storage.maintenance import Backend
from sensormesh_core.storage.rollups import refresh_rollups
from sensormesh_core.storage.schema import SqlType
from sensormesh_core.storage.time_buckets import HOUR, MINUTE, floor_to
from tests.sensormesh_core.storage.rollup_checks import write_fleet
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC)
START = floor_to(NOW - timedelta(hours=3), HOUR) + timedelta(seconds=13)
Bucket = tuple[datetime, int, float, float, float]


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


@pytest.fixture
def refresher(database_url: str, storage_backend: Backend) -> Callable[[], Awaitable[None]]:
    """Brings the rollups up to date: the refresher on plain PostgreSQL, a refresh of the
    continuous aggregates over their policies' window on TimescaleDB."""

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            if storage_backend is Backend.TIMESCALEDB:
                await refresh_continuous_aggregates(conn, StorageSettings())
            else:
                report = await refresh_rollups(conn, StorageSettings())
                assert report.ran and report.caught_up and report.horizon is not None
        finally:
            await conn.close()

    return run


async def _served(
    queries: query_pb2_grpc.QueryServiceStub, device: str, start: datetime, end: datetime, interval: timedelta
) -> dict[tuple[str, str], list[Bucket]]:
    request = query_pb2.ListReadingsRequest(
        device_id=device,
        start_time=stamp(start),
        end_time=stamp(end),
        interval=Duration(seconds=int(interval.total_seconds())),
        page_size=100_000,
    )
    got = await queries.ListReadings(request)
    assert not got.next_page_token
    return {
        (s.sensor, s.quantity): [
            (b.start_time.ToDatetime(tzinfo=UTC), b.count, b.min, b.max, b.mean) for b in s.buckets
        ]
        for s in got.series
    }


async def _from_raw(
    db: asyncpg.Connection, device: str, start: datetime, end: datetime, interval: timedelta
) -> dict[tuple[str, str], list[Bucket]]:
    """As date_bin over the raw rows gives them, served as stored_floats.py serves `real` values."""
    found = {}
    for ref in await device_series(db, device):
        col, kind = ref.value_column, ref.sql_type
        real = kind is SqlType.REAL
        rows = await db.fetch(
            f"SELECT date_bin($2::interval, time, 'epoch'::timestamptz) AS b, count({col}), "
            f"{value_sql(f'min({col})', kind)}, {value_sql(f'max({col})', kind)}, avg({col}::float8) FROM {ref.table} "
            f"WHERE {ref.key_column} = $1 AND time >= $3 AND time < $4 AND {col} IS NOT NULL GROUP BY 1 ORDER BY 1",
            ref.key,
            interval,
            start,
            end,
        )
        if rows:
            found[ref.sensor, ref.quantity] = [
                (*tuple(r)[:4], mean_as_sent(r[4], r[2], r[3]) if real else r[4]) for r in rows
            ]
    return found


async def _assert_same(
    db: asyncpg.Connection, queries: query_pb2_grpc.QueryServiceStub, device: str, end: datetime
) -> None:
    ranges = [
        (START - timedelta(seconds=13), end),
        (START + timedelta(minutes=7, seconds=30), end - timedelta(seconds=45)),
    ]
    intervals = [
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(seconds=90),
    ]
    for start, stop in ranges:
        for interval in intervals:
            served = await _served(queries, device, start, stop, interval)
            assert served == await _from_raw(db, device, start, stop, interval), (start, stop, interval)
            assert served  # something to compare


async def test_rollup_reads_equal_raw_aggregation_before_and_after_late_data(
    db: asyncpg.Connection,
    queries: query_pb2_grpc.QueryServiceStub,
    writer: ReadingWriter,
    device: str,
    refresher: Callable[[], Awaitable[None]],
    storage_backend: Backend,
) -> None:
    """On both backends; the bookkeeping of late rows is each backend's own."""
    partitioned = storage_backend is Backend.PARTITIONED
    minutes = int((NOW - START).total_seconds() // 60)  # up to now: a tail past the watermark
    await write_fleet(writer, device, START, minutes=minutes)
    end = NOW + timedelta(minutes=1)
    await _assert_same(db, queries, device, end)  # nothing materialized yet: all raw

    await refresher()
    await _assert_same(db, queries, device, end)

    # Late rows into buckets the refresh already made: served right away (from
    # the raw rows while their invalidation is pending), and after the next refresh.
    late = START + timedelta(minutes=61, seconds=2)
    await writer.write(
        device, [environment("bme280", late + timedelta(seconds=i), 90.75, 10.5) for i in range(4)]
    )
    if partitioned:
        assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") > 0
    await _assert_same(db, queries, device, end)
    await refresher()
    if partitioned:
        assert await db.fetchval("SELECT count(*) FROM rollup_invalidations") == 0
    await _assert_same(db, queries, device, end)


@pytest.mark.partitioned_only
async def test_whole_buckets_come_from_the_rollup_and_stale_ones_from_raw(
    db: asyncpg.Connection,
    queries: query_pb2_grpc.QueryServiceStub,
    writer: ReadingWriter,
    device: str,
    refresher: Callable[[], Awaitable[None]],
) -> None:
    """A doctored rollup row shows through, until a late row makes its bucket stale
    (the query's own stale-bucket logic, which TimescaleDB's real-time aggregates replace)."""
    await write_fleet(writer, device, START, minutes=120)
    await refresher()
    bucket = floor_to(START + timedelta(minutes=30), MINUTE)
    sensor_id = await db.fetchval("SELECT sensor_id FROM sensors WHERE name = 'bme280'")
    await db.execute(
        "UPDATE environment_readings_1m SET temperature_count = temperature_count + 1000 "
        "WHERE sensor_id = $1 AND bucket = $2",
        sensor_id,
        bucket,
    )
    window = (bucket - timedelta(minutes=2), bucket + timedelta(minutes=2))

    def count_at(served: dict[tuple[str, str], list[Bucket]]) -> int:
        return next(b[1] for b in served["bme280", "temperature"] if b[0] == bucket)

    raw = await _from_raw(db, device, *window, MINUTE)
    assert count_at(await _served(queries, device, *window, MINUTE)) == count_at(raw) + 1000

    await writer.write(device, [environment("bme280", bucket + timedelta(seconds=59), 21.0)])
    assert count_at(await _served(queries, device, *window, MINUTE)) == count_at(raw) + 1
    await refresher()
    assert count_at(await _served(queries, device, *window, MINUTE)) == count_at(raw) + 1
