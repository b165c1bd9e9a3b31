"""What the rollup gate costs an ingest batch, measured in isolation.

The end-to-end `sensormesh bench ingest` is too noisy on a shared 2-core
machine to resolve a few microseconds per batch, so this times the two
statements the gate changes, plain and gated, interleaved in the same run on
one connection (median of many transactions each), and the Python that finds
a late batch's ranges:

- lock: BEGIN; the offset-lock statement; COMMIT (plain / with the gate);
- late: `late_ranges` over a 1,000-row IMU batch whose rows are all late.

    .venv/bin/python -m sensormesh_bench.studies.rollup_gate [--url postgresql://...] [--transactions 3000]

Without --url it starts a temporary embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from ingest_service import writer
from sensormesh_core.storage import migrate
from sensormesh_core.storage.embedded import EmbeddedPostgres
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.rollup_gate import late_ranges


async def _transaction_us(conn: asyncpg.Connection, sql: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.perf_counter()
        async with conn.transaction():
            await conn.fetch(sql, ["bench-gate"])
        found.append((time.perf_counter() - started) * 1e6)
    return found


async def _measure(url: str, transactions: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        await create_device(conn, "bench-gate")
        plain: list[float] = []
        gated: list[float] = []
        for _ in range(10):  # interleaved, so load on the machine hits both alike
            plain += await _transaction_us(conn, writer._LOCK_OFFSETS, transactions // 10)
            gated += await _transaction_us(conn, writer._LOCK_OFFSETS_GATED, transactions // 10)
    finally:
        await conn.close()
    rows = {"imu_readings": [(t, t, 7, 0.0, 0.0, 9.8, 0.0, 0.0, 0.0) for t in range(1000)]}
    started = time.perf_counter()
    for _ in range(200):
        late_ranges(rows, 10_000)
    late_us = (time.perf_counter() - started) / 200 * 1e6
    return {
        "lock_plain_us": round(statistics.median(plain), 1),
        "lock_gated_us": round(statistics.median(gated), 1),
        "gate_us": round(statistics.median(gated) - statistics.median(plain), 1),
        "late_ranges_1000_rows_us": round(late_us, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--transactions", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        embedded = None
        url = args.url
        if url is None:
            embedded = EmbeddedPostgres(Path(folder), delete_on_exit=True)
            url = await asyncio.to_thread(embedded.url, "sensormesh_gate_bench")
            await asyncio.to_thread(migrate.upgrade, url)
        try:
            print(await _measure(url, args.transactions))
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)


if __name__ == "__main__":
    asyncio.run(main())
