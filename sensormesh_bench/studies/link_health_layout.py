"""Measure where link health is stored: a typed table of its own (what sensormesh does), generic
measurements in the narrow table (a row per value), or columns added to the data tables.

The workload is a fleet of battery BLE sensors: each streams 100 Hz IMU data and sends link
health once a minute (battery level and RSSI; the battery voltage every other time). The study
writes it with binary COPY in batches into each layout on the same server and prints bytes per
link-health reading (table plus its key index), and what link-health columns beside the data
would cost every IMU row (they are NULL in all but one row in 6,000). Figures are recorded in
docs/storage.md.

    .venv/bin/python -m sensormesh_bench.studies.link_health_layout [--sensors 20] [--minutes 600]
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

DDL = """
CREATE TABLE link_typed (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  battery_level real, battery_voltage real, signal_strength real, link_quality real);
CREATE INDEX ON link_typed (sensor_id, time DESC);
CREATE TABLE link_narrow (time timestamptz NOT NULL, sequence bigint NOT NULL, series_id int NOT NULL,
  value double precision NOT NULL);
CREATE INDEX ON link_narrow (series_id, time DESC);
CREATE TABLE imu_alone (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  ax real NOT NULL, ay real NOT NULL, az real NOT NULL, gx real NOT NULL, gy real NOT NULL, gz real NOT NULL);
CREATE INDEX ON imu_alone (sensor_id, time DESC);
CREATE TABLE imu_with_link (time timestamptz NOT NULL, sequence bigint NOT NULL, sensor_id int NOT NULL,
  ax real NOT NULL, ay real NOT NULL, az real NOT NULL, gx real NOT NULL, gy real NOT NULL, gz real NOT NULL,
  battery_level real, battery_voltage real, signal_strength real, link_quality real);
CREATE INDEX ON imu_with_link (sensor_id, time DESC);
"""

Row = tuple[Any, ...]


def generate(sensors: int, minutes: int) -> tuple[list[Row], list[Row], list[Row]]:
    """Link-health rows (typed), the same as narrow rows (series 4 × sensor + field), IMU rows."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    typed: list[Row] = []
    narrow: list[Row] = []
    imu: list[Row] = []
    sequence = 0
    for sensor in range(1, sensors + 1):
        for minute in range(minutes):
            at = start + timedelta(minutes=minute)
            sequence += 1
            volts = 3.3 + rng.random() if minute % 2 == 0 else None
            row = (at, sequence, sensor, 100 - minute / 60, volts, float(rng.randint(-95, -50)), None)
            typed.append(row)
            narrow += [(at, sequence, sensor * 4 + i, v) for i, v in enumerate(row[3:]) if v is not None]
        for tick in range(min(minutes, 10) * 6000):  # ten minutes of 100 Hz per sensor is enough for a size
            sequence += 1
            at = start + timedelta(milliseconds=10 * tick)
            imu.append((at, sequence, sensor, *(rng.gauss(0, 1) for _ in range(6))))
    return typed, narrow, imu


async def _copy(
    conn: asyncpg.Connection, table: str, rows: list[Row], columns: tuple[str, ...] | None
) -> float:
    began = time.perf_counter()
    for i in range(0, len(rows), 1000):
        await conn.copy_records_to_table(table, records=rows[i : i + 1000], columns=columns)
    return time.perf_counter() - began


async def _size(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval("SELECT pg_total_relation_size($1)", table))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=600)
    args = parser.parse_args()
    typed, narrow, imu = generate(args.sensors, args.minutes)
    imu_columns = ("time", "sequence", "sensor_id", "ax", "ay", "az", "gx", "gy", "gz")
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        conn = await asyncpg.connect(server.url("layout"))
        try:
            await conn.execute(DDL)
            timings = {
                "link_typed": await _copy(conn, "link_typed", typed, None),
                "link_narrow": await _copy(conn, "link_narrow", narrow, None),
                "imu_alone": await _copy(conn, "imu_alone", imu, None),
                "imu_with_link": await _copy(conn, "imu_with_link", imu, imu_columns),
            }
            await conn.execute("CHECKPOINT")
            sizes = {table: await _size(conn, table) for table in timings}
        finally:
            await conn.close()
            server.stop()
    values = len(narrow)
    print(f"{len(typed):,} link-health readings ({values:,} values), {len(imu):,} IMU rows")
    print(f"{'layout':<44}{'bytes/link reading':>20}{'readings/s':>12}")
    for name, table in (
        ("typed table (link_health_readings)", "link_typed"),
        ("narrow measurements", "link_narrow"),
    ):
        print(f"{name:<44}{sizes[table] / len(typed):>20.1f}{len(typed) / timings[table]:>12,.0f}")
    alone, beside = sizes["imu_alone"] / len(imu), sizes["imu_with_link"] / len(imu)
    print(f"IMU row alone {alone:.1f} bytes; with 4 NULL link columns {beside:.1f} (+{beside - alone:.1f})")


if __name__ == "__main__":
    asyncio.run(main())
