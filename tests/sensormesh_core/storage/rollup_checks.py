"""What the rollups must hold, computed straight from the raw rows, for the rollup tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sensormesh.v1 import reading_pb2

from sensormesh_core.storage.rollup_sql import rollup_columns
from sensormesh_core.storage.schema import ROLLUP_SOURCES, RollupSource, SqlType
from tests.support.reading_writer import ReadingWriter, environment, imu, link_health, measurement

Buckets = dict[tuple[int, datetime], tuple[Any, ...]]
STEPS = {"1m": "1 minute", "1h": "1 hour"}


def _sum(column: str, sql_type: SqlType) -> str:
    return f"sum({column}::float8)" if sql_type is SqlType.REAL else f"sum({column})"


async def raw_buckets(
    conn: asyncpg.Connection,
    source: RollupSource,
    width: str,
    before: datetime,
    after: datetime | None = None,
) -> Buckets:
    """Every bucket of `width` before `before` (and from `after`), aggregated from the raw rows."""
    aggregates = ", ".join(
        f"count({c}), min({c}), max({c}), {_sum(c, sql_type)}" for c, sql_type in source.columns
    )
    rows = await conn.fetch(
        f"SELECT {source.key}, date_bin('{STEPS[width]}', time, 'epoch'::timestamptz) AS bucket, {aggregates} "
        f"FROM {source.table} WHERE time < $1 AND time >= $2 GROUP BY 1, 2",
        before,
        after or datetime(2000, 1, 1, tzinfo=UTC),
    )
    return {(r[0], r[1]): tuple(r)[2:] for r in rows}


async def rollup_buckets(
    conn: asyncpg.Connection, source: RollupSource, width: str, after: datetime | None = None
) -> Buckets:
    columns = rollup_columns(source)
    rows = await conn.fetch(
        f"SELECT {', '.join(columns)} FROM {source.rollup(width)} WHERE bucket >= $1",
        after or datetime(2000, 1, 1, tzinfo=UTC),
    )
    return {(r[0], r[1]): tuple(r)[2:] for r in rows}


async def assert_rollups_match_raw(conn: asyncpg.Connection, after: datetime | None = None) -> int:
    """Every materialized rollup bucket equals the raw aggregation, and none is
    missing before its watermark. Returns how many buckets were compared."""
    marks = {r["rollup"]: r["watermark"] for r in await conn.fetch("SELECT * FROM rollup_watermarks")}
    compared = 0
    for source in ROLLUP_SOURCES:
        for width in ("1m", "1h"):
            mark = marks[source.rollup(width)]
            assert mark is not None, f"{source.rollup(width)} was never refreshed"
            expected = await raw_buckets(conn, source, width, mark, after)
            got = await rollup_buckets(conn, source, width, after)
            assert got == expected, source.rollup(width)
            compared += len(got)
    return compared


async def write_fleet(writer: ReadingWriter, device: str, start: datetime, minutes: int) -> None:
    """`minutes` of readings from `start`, of every kind, at uneven times, with values
    exact in float32 (multiples of 1/4), so every sum is exact whatever its order."""
    env, motion, soil, system, link = [], [], [], [], []
    for second in range(0, minutes * 60, 7):
        at = start + timedelta(seconds=second)
        humidity = None if second % 3 == 0 else 40 + (second % 11) / 4
        env.append(environment("bme280", at, 18 + (second % 29) / 4, humidity))
        if second % 2 == 0:
            motion.append(imu("mpu", at, ax=(second % 13) / 4 - 1))
        if second % 5 == 0:
            soil.append(measurement("soil", at, "soil_moisture", 30 + (second % 17) / 4, "%"))
        if second % 10 == 0:
            payload = reading_pb2.SystemPayload(cpu_temperature_celsius=50 + (second % 9) / 4)
            if second % 20 == 0:
                payload.disk_used_bytes, payload.disk_free_bytes = 10**11 + second, 5 * 10**10 - second
            reading = reading_pb2.Reading(sensor="host", system=payload)
            reading.sample_time.FromDatetime(at)
            system.append(reading)
        if second % 4 == 0:  # a BLE sensor's battery draining a quarter percent a minute, its RSSI
            link.append(
                link_health(
                    "mpu",
                    at,
                    battery=100 - (second // 60) / 4,
                    rssi=-70 - (second % 37) / 4,
                    volts=3 + (second % 5) / 4 if second % 8 == 0 else None,
                    quality=50 + (second % 9) / 4 if second % 12 == 0 else None,
                )
            )
    await writer.write(device, env + motion + soil + system + link, notify=False)
