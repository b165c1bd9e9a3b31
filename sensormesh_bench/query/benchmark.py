"""`sensormesh bench query`: read latencies over gRPC and REST, and live-feed latency under load.

Everything runs for real on this machine: a fresh database (the configured
server, or an embedded PostgreSQL in a temporary folder), `sensormesh ingest`
and `sensormesh query` in processes of their own, the Envoy binary in front of
the query service, simulated gateways in processes of their own, and the
measuring clients here. Every reading goes in through the ingest service.

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
- rest_*: the same three calls as REST through Envoy (httpx, uncompressed);
  rest_grpc_ratio is REST through Envoy over direct gRPC for the downsampled day
  (the chart query), as rows;
- the downsampled day in columns (READINGS_VIEW_COLUMNS, columns.py):
  range_day_1m_columns_* over direct gRPC (and range_day_raw_columns_*, the
  raw day in columns); rest_columns_curl_* and
  rest_columns_httpx_* as REST through Envoy with libcurl (a C client) and with
  httpx, rest_curl_range_day_1m_* the rows with libcurl, and
  rest_columns_curl_gzip_* gzip-compressed (libcurl's answers parsed by orjson,
  a native parser, as a non-Python client's are); rest_columns_grpc_ratio is
  libcurl's REST columns over gRPC's columns (the target),
  rest_columns_httpx_grpc_ratio httpx's, rest_columns_curl_stdlib_json_grpc_ratio
  libcurl's parsed by `json.loads`; json_day_1m_columns_{stdlib,orjson}_parse_*
  time those two parsers alone on the answer; json_day_1m_{rows,columns}[_gzip|_br]_bytes
  are the answer's sizes as Envoy sends them;
- live_*: from ingest's answer to a probe reading's WriteReadings (sent once
  the reading committed) to its arrival at a WatchReadings subscriber, while
  simulated gateways upload `--load-samples-per-s` samples/s through the same
  ingest process and watch their own feeds; live_load_* say how steady that
  load was (per-second samples sent and delivered, send lag, completeness).

Every call to DeviceService and QueryService sends an admin API key the bench
makes on its database, as a deployment's clients send theirs; devices send
their own tokens.
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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensormesh_bench.query.timing import latency_figures
from sensormesh_bench.targets import Target

if TYPE_CHECKING:
    from sensormesh_bench.ingest.phases import IngestProcess

TARGETS: list[Target] = [
    Target("latest_p50_ms", "<=", 5),
    Target("range_day_1m_p50_ms", "<=", 30),
    Target("rest_columns_grpc_ratio", "<=", 1.3),
    Target("live_p99_ms", "<=", 50),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=200, help="calls per small read (default 200)")
    parser.add_argument(
        "--raw-iterations", type=int, default=10, help="calls of the raw one-day read (default 10)"
    )
    parser.add_argument(
        "--live-seconds", type=float, default=10.0, help="length of the live measurement (default 10)"
    )
    parser.add_argument(
        "--load-samples-per-s",
        type=float,
        default=50_000,
        help="upload load during the live measurement, from real-time simulated gateways (default 50,000)",
    )
    parser.add_argument(
        "--load-processes", type=int, default=2, help="processes the simulated gateways run in (default 2)"
    )
    parser.add_argument(
        "--notify-window",
        help="the ingest process's SENSORMESH_INGEST_NOTIFY_WINDOW (ISO 8601, e.g. PT0.02S; default: its own)",
    )


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
                [sys.executable, "-m", "sensormesh_cli", "query"],
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

    from sensormesh_bench.query.stack import bench_database

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-") as folder:
        async with bench_database(Path(folder)) as url:
            return await _run(args, url, Path(folder))


async def _run(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    import grpc

    from sensormesh_bench.query.load import day_end, seed_history

    device, probe = f"bench-{uuid.uuid4().hex[:6]}", "bench-probe"
    gateways = _gateway_names(args.load_samples_per_s)
    tokens, key = await _register(url, [device, probe, *gateways])
    ingest = _ingest_process(url, args.notify_window)
    await ingest.start()
    query = _QueryProcess(url, folder)
    try:
        ingest_address, query_address = f"127.0.0.1:{ingest.port}", f"127.0.0.1:{query.port()}"
        end = day_end()
        async with grpc.aio.insecure_channel(ingest_address) as channel:
            await seed_history(channel, device, tokens[device], end)
        unrolled, figures = await _rollup_figures(args, url, query_address, key, device, end)
        figures |= await _reads_through_envoy(args, folder, query_address, ingest.port, key, device, end)
        figures |= _unrolled_figures(unrolled, figures["range_day_1m_p50_ms"])
        cpu = _cpu_readers(ingest.pid, query.process.pid, folder)
        figures |= await _live_figures(
            args,
            ingest_address,
            query_address,
            key,
            (probe, tokens[probe]),
            {g: tokens[g] for g in gateways},
            cpu,
        )
    finally:
        query.stop()
        await ingest.stop()
    return figures


def _gateway_names(samples_per_s: float) -> list[str]:
    """As many simulated gateways as make up `samples_per_s` in real time (at least one)."""
    from sensormesh_bench.query.load import samples_per_gateway_second

    return [f"gateway-{i}" for i in range(max(1, round(samples_per_s / samples_per_gateway_second())))]


async def _register(url: str, device_ids: list[str]) -> tuple[dict[str, str], str]:
    """Register the seeded device, the probe and the gateways in the database, and make the
    bench's admin API key there; the devices' tokens, and the key."""
    import asyncpg

    from sensormesh_bench.query.load import register
    from sensormesh_core.access.principal import ROLE_ADMIN
    from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key

    conn = await asyncpg.connect(url)
    try:
        tokens = await register(conn, device_ids)
        _, key = await create_key(conn, "bench-admin", ROLE_ADMIN, creator=LOCAL_CREATOR)
        return tokens, key
    finally:
        await conn.close()


def _ingest_process(url: str, notify_window: str | None) -> IngestProcess:
    """`sensormesh ingest` for the bench, not yet started. The bench refreshes the
    rollups itself, between the two minute reads; the service's own refresher
    (every minute by default) would race it."""
    from sensormesh_bench.ingest.phases import IngestProcess

    return IngestProcess(
        {"SENSORMESH_DATABASE_URL": url, "SENSORMESH_INGEST_ROLLUP_REFRESH_INTERVAL": "PT1H"}
        | ({"SENSORMESH_INGEST_NOTIFY_WINDOW": notify_window} if notify_window else {})
    )


async def _rollup_figures(
    args: argparse.Namespace, url: str, query_address: str, key: str, device: str, end: datetime
) -> tuple[list[float], dict[str, Any]]:
    """The downsampled day read before the rollups are refreshed (its timings) and
    after; the rollup figures, with whether both reads returned the same bytes."""
    from sensormesh_bench.query.reads import bring_rollups_up_to_date, measure_minute_read

    unrolled, from_raw = await measure_minute_read(args, query_address, key, device, end)
    figures = await bring_rollups_up_to_date(url)
    _, from_rollups = await measure_minute_read(None, query_address, key, device, end)
    figures["rollup_read_identical"] = from_raw == from_rollups
    return unrolled, figures


async def _reads_through_envoy(
    args: argparse.Namespace,
    folder: Path,
    query_address: str,
    ingest_port: int,
    key: str,
    device: str,
    end: datetime,
) -> dict[str, Any]:
    """The read figures, with an Envoy in front of the query service for the ones
    through it; Envoy is stopped again before the live measurement, which does not use it."""
    from sensormesh_bench.query.reads import measure_reads
    from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, RateLimits, start_envoy

    envoy = start_envoy(
        EnvoyOptions(
            listen_port=_free_port(),
            admin_port=_free_port(),
            query=("127.0.0.1", int(query_address.rsplit(":", 1)[1])),
            ingest=("127.0.0.1", ingest_port),
            rate_limits=RateLimits.every(1_000_000),  # measure Envoy, not its limits
        ),
        log_dir=folder,
    )
    try:
        return await measure_reads(args, query_address, envoy.base_url, key, device, end)
    finally:
        envoy.stop()


def _unrolled_figures(unrolled: list[float], rolled_p50_ms: float) -> dict[str, float]:
    """The downsampled read's latency without rollups, and how many times faster they make it."""
    figures = latency_figures("range_day_1m_unrolled", unrolled)
    figures["rollup_speedup"] = round(figures["range_day_1m_unrolled_p50_ms"] / rolled_p50_ms, 2)
    return figures


async def _live_figures(
    args: argparse.Namespace,
    ingest_address: str,
    query_address: str,
    key: str,
    probe: tuple[str, str],
    gateways: dict[str, str],
    cpu: dict[str, Callable[[], float | None]],
) -> dict[str, Any]:
    """Live-feed latency under the gateways' load, after the machine's load average,
    since other work on the machine skews the live figures."""
    from sensormesh_bench.query.live import measure_live
    from sensormesh_bench.query.load import GatewayLoad

    load = GatewayLoad(ingest_address, query_address, key, args.load_processes)
    figures: dict[str, Any] = {"machine_load_1m": round(os.getloadavg()[0], 2)}  # other work on the machine
    return figures | await measure_live(args, ingest_address, query_address, key, probe, gateways, load, cpu)


def _cpu_readers(ingest_pid: int, query_pid: int, folder: Path) -> dict[str, Callable[[], float | None]]:
    """CPU seconds so far of the ingest and query processes, and of the embedded PostgreSQL."""
    from sensormesh_bench.cpu import postmaster_pid, process_cpu, tree_cpu

    readers: dict[str, Callable[[], float | None]] = {
        "ingest": lambda: process_cpu(ingest_pid),
        "query": lambda: process_cpu(query_pid),
    }
    postmaster = postmaster_pid(folder / "postgres")
    if postmaster is not None:  # an embedded server: ours alone
        readers["postgres"] = lambda: tree_cpu(postmaster)
    return readers


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
