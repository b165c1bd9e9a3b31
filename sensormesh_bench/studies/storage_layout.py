"""Measure the storage layout decision: one table per payload kind vs one
sparse table for every typed reading.

Writes the same realistic mix (per device: 100 Hz IMU, 1 Hz environment, a
system reading every 10 s) with binary COPY in batches into both layouts on
the same server, and prints rows/s, samples/s and bytes per sample (table plus
its (sensor_id, time) index). Figures are recorded in docs/storage.md.

    .venv/bin/python -m sensormesh_bench.studies.storage_layout [--seconds-of-data 600] [--devices 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from sensormesh_core.storage.embedded import EmbeddedPostgres

PER_KIND_DDL = """
CREATE TABLE imu_k (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  ax real NOT NULL, ay real NOT NULL, az real NOT NULL, gx real NOT NULL, gy real NOT NULL, gz real NOT NULL);
CREATE TABLE env_k (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  temperature real NOT NULL, humidity real, pressure real);
CREATE TABLE sys_k (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  cpu real, disk_used bigint, disk_free bigint);
CREATE INDEX ON imu_k (sensor_id, time DESC); CREATE INDEX ON env_k (sensor_id, time DESC);
CREATE INDEX ON sys_k (sensor_id, time DESC);
"""
SPARSE_DDL = """
CREATE TABLE sparse (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  kind smallint NOT NULL, ax real, ay real, az real, gx real, gy real, gz real,
  temperature real, humidity real, pressure real, cpu real, disk_used bigint, disk_free bigint);
CREATE INDEX ON sparse (sensor_id, time DESC);
"""
SPARSE_COLUMNS = (
    "time",
    "sequence",
    "sensor_id",
    "kind",
    "ax",
    "ay",
    "az",
    "gx",
    "gy",
    "gz",
    "temperature",
    "humidity",
    "pressure",
    "cpu",
    "disk_used",
    "disk_free",
)


Row = tuple[Any, ...]


def generate(devices: int, seconds: int) -> tuple[list[Row], list[Row], list[Row], int]:
    """Rows of the mix in time order, and the number of samples they hold."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    imu: list[Row] = []
    env: list[Row] = []
    system: list[Row] = []
    rng = random.Random(7)
    seq = 0
    for device in range(devices):
        imu_sensor, env_sensor, sys_sensor = device * 3 + 1, device * 3 + 2, device * 3 + 3
        for tick in range(seconds * 100):
            seq += 1
            t = start + timedelta(milliseconds=10 * tick)
            imu.append((t, seq, imu_sensor, *(rng.gauss(0, 1) for _ in range(6))))
            if tick % 100 == 0:
                seq += 1
                env.append(
                    (t, seq, env_sensor, 21.5 + rng.random(), 40.0 + rng.random(), 1013.0 + rng.random())
                )
            if tick % 1000 == 0:
                seq += 1
                system.append((t, seq, sys_sensor, 48.0 + rng.random(), 12_000_000_000, 20_000_000_000))
    samples = len(imu) * 6 + len(env) * 3 + len(system) * 3
    return imu, env, system, samples


def _batches(rows: list[Row], size: int) -> list[list[Row]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def per_kind(
    conn: asyncpg.Connection, imu: list[Row], env: list[Row], system: list[Row], batch: int
) -> float:
    began = time.perf_counter()
    for table, rows in (("imu_k", imu), ("env_k", env), ("sys_k", system)):
        for chunk in _batches(rows, batch):
            await conn.copy_records_to_table(table, records=chunk)
    return time.perf_counter() - began


async def sparse(
    conn: asyncpg.Connection, imu: list[Row], env: list[Row], system: list[Row], batch: int
) -> float:
    rows = [(r[0], r[1], r[2], 1, *r[3:], None, None, None, None, None, None) for r in imu]
    rows += [(r[0], r[1], r[2], 2, *([None] * 6), *r[3:], None, None, None) for r in env]
    rows += [(r[0], r[1], r[2], 3, *([None] * 9), *r[3:]) for r in system]
    began = time.perf_counter()
    for chunk in _batches(rows, batch):
        await conn.copy_records_to_table("sparse", records=chunk, columns=SPARSE_COLUMNS)
    return time.perf_counter() - began


async def size(conn: asyncpg.Connection, tables: list[str]) -> int:
    return sum([int(await conn.fetchval("SELECT pg_total_relation_size($1)", t)) for t in tables])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--seconds-of-data", type=int, default=600)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    imu, env, system, samples = generate(args.devices, args.seconds_of_data)
    rows = len(imu) + len(env) + len(system)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        conn = await asyncpg.connect(server.url("layout"))
        try:
            await conn.execute(PER_KIND_DDL + SPARSE_DDL)
            results = {}
            for name, write, tables in (
                ("per-kind tables", per_kind, ["imu_k", "env_k", "sys_k"]),
                ("one sparse table", sparse, ["sparse"]),
            ):
                seconds = await write(conn, imu, env, system, args.batch)
                await conn.execute("CHECKPOINT")
                results[name] = (seconds, await size(conn, tables))
        finally:
            await conn.close()
            server.stop()
    print(f"{rows:,} rows, {samples:,} samples, batch {args.batch}, {args.devices} devices")
    print(f"{'layout':<18}{'rows/s':>12}{'samples/s':>14}{'bytes/sample':>14}")
    for name, (seconds, nbytes) in results.items():
        print(f"{name:<18}{rows / seconds:>12,.0f}{samples / seconds:>14,.0f}{nbytes / samples:>14.1f}")


if __name__ == "__main__":
    asyncio.run(main())
