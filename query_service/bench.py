"""`sensormesh bench query`: read latencies over gRPC and REST, and live-feed latency under load.

Everything runs for real on this machine: a fresh database (the configured
server, or an embedded PostgreSQL in a temporary folder), `sensormesh query`
in its own process, the Envoy binary in front of it, and the clients here.

Figures (milliseconds unless named otherwise):
- latest_*: GetLatestReadings of a device with one series, direct gRPC;
- range_day_raw_*, range_day_1m_*: ListReadings of one day of 1 Hz data of one
  series (86,400 readings), raw in one page, and downsampled to 1 minute, once
  the rollups are up to date (on plain PostgreSQL the bench refreshes them as
  ingest would; the last minutes of the day come from the raw table, as they
  do in service);
- range_day_1m_unrolled_*: the same downsampled read before the rollups were
  refreshed (date_bin over all 86,400 raw rows), measured in the same run;
  rollup_speedup is its p50 over range_day_1m_p50_ms, and
  rollup_read_identical says whether both reads returned the same bytes;
- rest_*: the same three calls as REST through Envoy; rest_grpc_ratio is REST
  through Envoy over direct gRPC for the downsampled day (the chart query);
- live_*: from the acknowledgement of a probe reading's commit to its arrival
  at a WatchReadings subscriber, while a background load writes and signals
  `--load-samples-per-s` samples/s on other watched devices.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sensormesh_core.bench_command import Target

TARGETS: list[Target] = [
    Target("latest_p50_ms", "<=", 5),
    Target("range_day_1m_p50_ms", "<=", 30),
    Target("rest_grpc_ratio", "<=", 1.3),
    Target("live_p99_ms", "<=", 50),
]
LOAD_DEVICES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=200, help="calls per small read (default 200)")
    parser.add_argument(
        "--raw-iterations", type=int, default=10, help="calls of the raw one-day read (default 10)"
    )
    parser.add_argument(
        "--live-seconds", type=float, default=10.0, help="length of the live measurement (default 10)"
    )
    parser.add_argument(
        "--load-samples-per-s", type=float, default=50_000, help="background load (default 50,000)"
    )
    parser.add_argument("--load", choices=["test-writer"], default="test-writer", help="what drives the load")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(count: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    """Milliseconds of `count` sequential calls after two warm-up calls."""
    for _ in range(2):
        await call()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def _figures(name: str, samples: list[float]) -> dict[str, float]:
    return {
        f"{name}_p50_ms": round(percentile(samples, 0.5), 3),
        f"{name}_p99_ms": round(percentile(samples, 0.99), 3),
    }


class _QueryProcess:
    """`sensormesh query` in its own process, so the clients here do not share its CPU time slice."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.log = folder / "query.log"
        env = {
            **os.environ,
            "SENSORMESH_DATABASE_URL": database_url,
            "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sensormesh_core", "query"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def port(self, seconds: float = 30) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            match = re.search(r"event=query_serving .*port=(\d+)", self.log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"query service did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    from query_service.bench_stack import bench_database

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-") as folder:
        async with bench_database(Path(folder)) as url:
            return await _run(args, url, Path(folder))


async def _run(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    import asyncpg

    from query_service.bench_live import measure_live
    from query_service.bench_load import WriterLoad, day_end, register, seed_history
    from query_service.bench_reads import bring_rollups_up_to_date, measure_minute_read, measure_reads
    from sensormesh_core.envoy_proxy import EnvoyOptions, start_envoy

    device, probe = f"bench-{uuid.uuid4().hex[:6]}", "bench-probe"
    load_devices = [f"load-{i}" for i in range(LOAD_DEVICES)]
    end = day_end()
    conn = await asyncpg.connect(url)
    try:
        await register(conn, [device, probe, *load_devices])
        await seed_history(conn, device, end)
    finally:
        await conn.close()
    query = _QueryProcess(url, folder)
    try:
        port = query.port()
        unrolled, from_raw = await measure_minute_read(args, f"127.0.0.1:{port}", device, end)
        figures = await bring_rollups_up_to_date(url)
        _, from_rollups = await measure_minute_read(None, f"127.0.0.1:{port}", device, end)
        figures["rollup_read_identical"] = from_raw == from_rollups
        envoy = start_envoy(
            EnvoyOptions(
                listen_port=_free_port(),
                admin_port=_free_port(),
                query=("127.0.0.1", port),
                requests_per_second=1_000_000,
            ),
            log_dir=folder,
        )
        try:
            figures |= await measure_reads(args, f"127.0.0.1:{port}", envoy.base_url, device, end)
            figures |= _figures("range_day_1m_unrolled", unrolled)
            figures["rollup_speedup"] = round(
                figures["range_day_1m_unrolled_p50_ms"] / figures["range_day_1m_p50_ms"], 2
            )
        finally:
            envoy.stop()
        load = WriterLoad(url)
        figures |= await measure_live(args, url, f"127.0.0.1:{port}", probe, load_devices, load)
    finally:
        query.stop()
    return figures


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
