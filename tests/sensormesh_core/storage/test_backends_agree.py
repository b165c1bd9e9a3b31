"""Both backends serve the same buckets for the same readings, and both agree with the raw
rows to double precision.

The readings are written into two databases on the test server, one migrated to plain
PostgreSQL partitioning and one to TimescaleDB, and both rollups are brought up to date.
Values are chosen so that single-precision sums show: an hour of 100 Hz accelerometer
readings of 9.80665 m/s2 (its float32 value, as stored), which a sum in `real` made
0.39 % low, and the fleet's mixed kinds at uneven times.
"""

from __future__ import annotations

import asyncio
import math
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest
from psycopg import sql

from query_service.storage.history import _coverage, buckets
from query_service.storage.series import device_series
from query_service.storage.stored_floats import mean_as_sent, value_sql
from sensormesh_core.config import StorageSettings, TimescaleMode
from sensormesh_core.storage import migrate
from sensormesh_core.storage.continuous_aggregates import refresh_continuous_aggregates
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import ensure_database
from sensormesh_core.storage.maintenance import Backend, maintain
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.rollups import refresh_rollups
from sensormesh_core.storage.schema import SqlType
from sensormesh_core.storage.time_buckets import HOUR, MINUTE, floor_to
from tests.sensormesh_core.storage.rollup_checks import write_fleet
from tests.support.reading_writer import ReadingWriter, imu

pytestmark = [pytest.mark.storage, pytest.mark.timescaledb_only]

DEVICE = "pi-1"
G = struct.unpack("f", struct.pack("f", 9.80665))[0]  # what a `real` column holds for 9.80665
HOUR_START = floor_to(datetime.now(UTC) - timedelta(hours=4), HOUR)
FLEET_START = HOUR_START + timedelta(minutes=3, seconds=13)
INTERVALS = (MINUTE, timedelta(minutes=10), HOUR, timedelta(seconds=90))
RELATIVE = 1e-12  # double precision, summed in another order; single precision is 1e-7 at best

Bucket = tuple[datetime, int, float, float, float]  # start, count, min, max, mean


def _database(admin_url: str, mode: TimescaleMode) -> str:
    name = f"sensormesh_agree_{mode.value}_{uuid.uuid4().hex[:8]}"
    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    migrate.upgrade(url, timescaledb=mode)
    return url


def _drop(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def _write(url: str) -> None:
    """The same readings into the database at `url`, then its rollups refreshed."""
    conn = await asyncpg.connect(url)
    try:
        await maintain(conn, StorageSettings())  # partitions around today (plain PostgreSQL)
        await create_device(conn, DEVICE)
        writer = ReadingWriter(conn)
        await writer.write(DEVICE, [imu("imu-100hz", HOUR_START)], notify=False)
        sensor_id = await conn.fetchval("SELECT sensor_id FROM sensors WHERE name = 'imu-100hz'")
        await conn.execute(  # the rest of the hour at 100 Hz: 359,999 rows in one statement
            "INSERT INTO imu_readings SELECT $2::timestamptz + i * interval '10 milliseconds', i + 1000, $1, "
            "0, 0, $3::real, 0, 0, 0 FROM generate_series(1, 359999) AS i",
            sensor_id,
            HOUR_START,
            G,
        )
        await write_fleet(writer, DEVICE, FLEET_START, minutes=150)
        if await conn.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'") == "timescaledb":
            await refresh_continuous_aggregates(conn, StorageSettings())
        else:
            while not (await refresh_rollups(conn, StorageSettings())).caught_up:
                pass
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def backends(postgres_admin_url: str, storage_backend: Backend) -> Iterator[dict[Backend, str]]:
    """One database per backend with the same readings, written once for the module."""
    if storage_backend is not Backend.TIMESCALEDB:  # module-scoped: set up before the marker's skip
        pytest.skip(
            "only on a server with TimescaleDB preloaded (see the README's Testing against TimescaleDB)"
        )
    urls: dict[Backend, str] = {}
    try:
        for backend, mode in (
            (Backend.PARTITIONED, TimescaleMode.OFF),
            (Backend.TIMESCALEDB, TimescaleMode.REQUIRE),
        ):
            urls[backend] = _database(postgres_admin_url, mode)
            asyncio.run(_write(urls[backend]))
        yield urls
    finally:
        for url in urls.values():
            _drop(postgres_admin_url, url)


async def _served(url: str, backend: Backend, interval: timedelta) -> dict[tuple[str, str], list[Bucket]]:
    """Every series' buckets over the data's whole span, as ListReadings reads them."""
    start, end = HOUR_START - HOUR, HOUR_START + 4 * HOUR
    conn = await asyncpg.connect(url)
    try:
        served = {}
        for ref in await device_series(conn, DEVICE):
            rows, _ = await buckets(conn, ref, backend, start, end, interval, limit=10_000)
            served[ref.sensor, ref.quantity] = [(r.start, r.count, r.min, r.max, r.mean) for r in rows]
        return served
    finally:
        await conn.close()


async def _from_raw(url: str, interval: timedelta) -> dict[tuple[str, str], list[Bucket]]:
    """The same buckets aggregated straight from the raw rows in double precision."""
    conn = await asyncpg.connect(url)
    try:
        expected = {}
        for ref in await device_series(conn, DEVICE):
            col, kind = ref.value_column, ref.sql_type
            real = kind is SqlType.REAL
            rows = await conn.fetch(
                f"SELECT date_bin($2::interval, time, 'epoch'::timestamptz) AS b, count({col}), "
                f"{value_sql(f'min({col})', kind)}, {value_sql(f'max({col})', kind)}, avg({col}::float8) "
                f"FROM {ref.table} WHERE {ref.key_column} = $1 AND {col} IS NOT NULL GROUP BY 1 ORDER BY 1",
                ref.key,
                interval,
            )
            expected[ref.sensor, ref.quantity] = [
                (*tuple(r)[:4], mean_as_sent(r[4], r[2], r[3]) if real else r[4]) for r in rows
            ]
        return expected
    finally:
        await conn.close()


def _assert_close(
    got: dict[tuple[str, str], list[Bucket]], want: dict[tuple[str, str], list[Bucket]]
) -> None:
    assert got.keys() == want.keys()
    for series, rows in want.items():
        assert len(got[series]) == len(rows), series
        for served, expected in zip(got[series], rows, strict=True):
            assert served[:4] == expected[:4], series  # bucket, count, min, max: exact
            assert math.isclose(served[4], expected[4], rel_tol=RELATIVE), (series, served, expected)


@pytest.mark.parametrize("interval", INTERVALS, ids=lambda i: f"{int(i.total_seconds())}s")
async def test_each_backend_serves_the_raw_aggregation_to_double_precision(
    backends: dict[Backend, str], interval: timedelta
) -> None:
    for backend, url in backends.items():
        _assert_close(await _served(url, backend, interval), await _from_raw(url, interval))


@pytest.mark.parametrize("interval", INTERVALS, ids=lambda i: f"{int(i.total_seconds())}s")
async def test_the_two_backends_serve_the_same_buckets(
    backends: dict[Backend, str], interval: timedelta
) -> None:
    partitioned = await _served(backends[Backend.PARTITIONED], Backend.PARTITIONED, interval)
    timescale = await _served(backends[Backend.TIMESCALEDB], Backend.TIMESCALEDB, interval)
    assert len(partitioned) >= 10 and all(partitioned.values())  # something to compare
    _assert_close(timescale, partitioned)


async def test_an_hour_at_100_hz_sums_without_loss_in_the_rollups(backends: dict[Backend, str]) -> None:
    """The 1-hour rollup bucket itself, not only what the query makes of it."""
    for backend, url in backends.items():
        conn = await asyncpg.connect(url)
        try:
            count, total = await conn.fetchrow(
                "SELECT r.acceleration_z_count, r.acceleration_z_sum FROM imu_readings_1h r "
                "JOIN sensors s USING (sensor_id) WHERE s.name = 'imu-100hz' AND r.bucket = $1",
                HOUR_START,
            )
        finally:
            await conn.close()
        assert count == 360_000, backend
        assert math.isclose(total / count, G, rel_tol=RELATIVE), (backend, total / count, G)


async def test_after_a_refresh_the_buckets_come_from_the_aggregates(backends: dict[Backend, str]) -> None:
    """So the comparisons above compare the rollups, not the raw rows read in their place."""
    conn = await asyncpg.connect(backends[Backend.TIMESCALEDB])
    try:
        for ref in await device_series(conn, DEVICE):
            levels, stale = await _coverage(
                conn, ref, Backend.TIMESCALEDB, HOUR, HOUR_START, HOUR_START + 3 * HOUR
            )
            assert [level.width for level in levels] == ["1h", "1m"]
            assert not [s for s in stale if s[0] < HOUR_START + 3 * HOUR and s[1] > HOUR_START], ref
            assert not [s for s in levels[0].stale if s[0] < HOUR_START + 3 * HOUR and s[1] > HOUR_START], ref
    finally:
        await conn.close()


async def test_rows_written_below_what_is_materialized_are_served_before_the_next_refresh(
    backends: dict[Backend, str],
) -> None:
    """An agent's backlog lands in buckets the aggregates already hold: until TimescaleDB's
    next refresh its invalidation log marks them, and they are read from the raw rows."""
    url = backends[Backend.TIMESCALEDB]
    late = HOUR_START + timedelta(minutes=30, seconds=0.005)  # between two 100 Hz samples
    conn = await asyncpg.connect(url)
    try:
        await ReadingWriter(conn).write(DEVICE, [imu("imu-100hz", late, az=1000.0)], notify=False)
        for interval in (MINUTE, HOUR):
            _assert_close(await _served(url, Backend.TIMESCALEDB, interval), await _from_raw(url, interval))
        await refresh_continuous_aggregates(conn, StorageSettings())
        _assert_close(await _served(url, Backend.TIMESCALEDB, HOUR), await _from_raw(url, HOUR))
    finally:
        await conn.close()
