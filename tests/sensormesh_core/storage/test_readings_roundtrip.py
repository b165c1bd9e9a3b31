"""Readings of every payload kind go through the real schema and come back,
raw and downsampled, with the query shapes the services use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sensormesh_core.storage.maintenance import Backend, storage_backend
from sensormesh_core.storage.partitions import PartitionManager, days_between
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.schema import ENVIRONMENT, IMU, MEASUREMENTS_TABLE, SYSTEM

pytestmark = pytest.mark.storage

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


async def _sensor(db: asyncpg.Connection, device_id: str, name: str) -> int:
    return int(
        await db.fetchval(
            "INSERT INTO sensors (device_id, name) VALUES ($1, $2) RETURNING sensor_id", device_id, name
        )
    )


async def _prepare(db: asyncpg.Connection) -> dict[str, int]:
    await create_device(db, "bench-pi")
    if await storage_backend(db) is Backend.PARTITIONED:
        await PartitionManager().ensure(db, days_between(START, START + timedelta(minutes=5)))
    return {
        "imu": await _sensor(db, "bench-pi", "mpu6050-0x68"),
        "env": await _sensor(db, "bench-pi", "bme280-0x76"),
        "sys": await _sensor(db, "bench-pi", "system"),
        "gen": await _sensor(db, "bench-pi", "soil-probe"),
    }


async def test_every_payload_kind_round_trips(db: asyncpg.Connection) -> None:
    ids = await _prepare(db)
    series_id = await db.fetchval(
        "INSERT INTO series (sensor_id, quantity, unit) VALUES ($1, 'soil_moisture', '%') RETURNING series_id",
        ids["gen"],
    )
    imu = [
        (
            START + timedelta(milliseconds=10 * i),
            i + 1,
            ids["imu"],
            0.01 * i,
            -0.02,
            9.80665,
            1.5,
            -2.25,
            0.125,
        )
        for i in range(1000)
    ]
    env = [
        (START, 1001, ids["env"], 21.5, 48.25, 1013.25),
        (START + timedelta(seconds=1), 1002, ids["env"], 21.75, None, None),
    ]
    system = [(START, 1003, ids["sys"], 48.312, 12_000_000_000, 20_000_000_000)]
    generic = [(START, 1004, series_id, 0.3125)]

    await db.copy_records_to_table(IMU.table, records=imu, columns=IMU.columns)
    await db.copy_records_to_table(ENVIRONMENT.table, records=env, columns=ENVIRONMENT.columns)
    await db.copy_records_to_table(SYSTEM.table, records=system, columns=SYSTEM.columns)
    await db.copy_records_to_table(
        MEASUREMENTS_TABLE, records=generic, columns=("time", "sequence", "series_id", "value")
    )

    got_imu = await db.fetch(
        "SELECT time, sequence, acceleration_x, acceleration_z, angular_rate_z FROM imu_readings "
        "WHERE sensor_id = $1 AND time >= $2 AND time < $3 ORDER BY time",
        ids["imu"],
        START,
        START + timedelta(seconds=10),
    )
    assert len(got_imu) == 1000
    assert got_imu[0]["time"] == START and got_imu[999]["sequence"] == 1000
    assert got_imu[500]["acceleration_x"] == pytest.approx(5.0, rel=1e-6)  # real: float32 precision
    assert got_imu[0]["acceleration_z"] == pytest.approx(9.80665, rel=1e-7)
    assert got_imu[0]["angular_rate_z"] == 0.125

    got_env = await db.fetch(
        "SELECT temperature, relative_humidity, pressure FROM environment_readings ORDER BY time"
    )
    assert [tuple(r) for r in got_env] == [(21.5, 48.25, 1013.25), (21.75, None, None)]
    got_sys = await db.fetchrow("SELECT cpu_temperature, disk_used, disk_free FROM system_readings")
    assert got_sys["disk_used"] == 12_000_000_000 and got_sys["disk_free"] == 20_000_000_000
    assert got_sys["cpu_temperature"] == pytest.approx(48.312, rel=1e-6)
    assert await db.fetchval("SELECT value FROM measurements WHERE series_id = $1", series_id) == 0.3125


async def test_downsampled_read_buckets_min_max_mean_count(db: asyncpg.Connection) -> None:
    ids = await _prepare(db)
    # 10 Hz for 3 seconds: 30 readings, 10 per 1-second bucket, acceleration_x = i.
    rows = [
        (START + timedelta(milliseconds=100 * i), i + 1, ids["imu"], float(i), 0.0, 9.8, 0.0, 0.0, 0.0)
        for i in range(30)
    ]
    await db.copy_records_to_table(IMU.table, records=rows, columns=IMU.columns)

    buckets = await db.fetch(
        "SELECT date_bin($1::interval, time, 'epoch'::timestamptz) AS bucket, count(acceleration_x) AS n, "
        "min(acceleration_x) AS lo, max(acceleration_x) AS hi, avg(acceleration_x) AS mean "
        "FROM imu_readings WHERE sensor_id = $2 AND time >= $3 AND time < $4 GROUP BY bucket ORDER BY bucket",
        timedelta(seconds=1),
        ids["imu"],
        START,
        START + timedelta(seconds=3),
    )
    assert [(b["n"], b["lo"], b["hi"], b["mean"]) for b in buckets] == [
        (10, 0.0, 9.0, 4.5),
        (10, 10.0, 19.0, 14.5),
        (10, 20.0, 29.0, 24.5),
    ]
    assert [b["bucket"] for b in buckets] == [START + timedelta(seconds=s) for s in range(3)]


async def test_deleting_a_device_removes_its_registry_rows(db: asyncpg.Connection) -> None:
    ids = await _prepare(db)
    series_id = await db.fetchval(
        "INSERT INTO series (sensor_id, quantity, unit) VALUES ($1, 'temperature', 'Cel') RETURNING series_id",
        ids["env"],
    )
    await db.execute("INSERT INTO latest_values VALUES ($1, now(), 21.5, 7)", series_id)

    await db.execute("DELETE FROM devices WHERE device_id = 'bench-pi'")

    for table in ("sensors", "series", "latest_values", "upload_offsets"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
