"""A steady ingest-like write load: `python -m tests.support.load --database-url URL ...`.

Writes IMU readings (6 samples each) for several devices in batches every
tick, each batch committed and signalled as ingest does (ReadingWriter), until
the time is up; then prints one JSON line with what it achieved. Used by
`sensormesh bench query` as the load behind the live-latency figure until the
real ingest service can drive it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.support.reading_writer import ReadingWriter, imu

SAMPLES_PER_IMU_READING = 6


async def _device_loop(
    url: str, devices: list[str], rows_per_tick: int, tick_s: float, until: float, totals: dict[str, int]
) -> None:
    conn = await asyncpg.connect(url)
    writer = ReadingWriter(conn)
    next_tick = time.monotonic()
    try:
        while time.monotonic() < until:
            now = datetime.now(UTC)
            for device in devices:
                batch = [
                    imu("imu-0", now + timedelta(microseconds=i), ax=float(i % 100))
                    for i in range(rows_per_tick)
                ]
                await writer.write(device, batch)
                totals["rows"] += rows_per_tick
                totals["batches"] += 1
            next_tick += tick_s
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                totals["late_ticks"] += 1
                next_tick = time.monotonic()
    finally:
        await conn.close()


async def run_load(
    url: str, devices: list[str], samples_per_s: float, seconds: float, connections: int
) -> dict[str, float]:
    tick_s = 0.05
    rows_per_tick = max(1, round(samples_per_s / SAMPLES_PER_IMU_READING * tick_s / len(devices)))
    totals = {"rows": 0, "batches": 0, "late_ticks": 0}
    started = time.monotonic()
    until = started + seconds
    groups = [devices[i::connections] for i in range(connections)]
    await asyncio.gather(*(_device_loop(url, g, rows_per_tick, tick_s, until, totals) for g in groups if g))
    elapsed = time.monotonic() - started
    return {
        "samples_per_s": totals["rows"] * SAMPLES_PER_IMU_READING / elapsed,
        "rows_per_s": totals["rows"] / elapsed,
        "batches_per_s": totals["batches"] / elapsed,
        "late_ticks": totals["late_ticks"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--devices", required=True, help="comma-separated registered device ids")
    parser.add_argument("--samples-per-s", type=float, default=50_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(
        run_load(
            args.database_url, args.devices.split(","), args.samples_per_s, args.seconds, args.connections
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
