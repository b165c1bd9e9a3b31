"""`sensormesh bench ingest`: samples/s through the ingest service against
the raw COPY limit of the same database, measured in the same run.

Phases of each round, each with fresh devices (so nothing is a duplicate):

- copy: the simulated fleet's batches, decoded by the service's own decoder
  beforehand, COPYed straight into the same tables with the same batch size
  (a transaction per batch, one COPY per table, as many connections as the
  service may use for the same devices). This is the database's limit for
  this data on this machine, and `ratio` is measured against it. The same on
  a single connection is reported too (`copy_one_connection_*`).
- ingest: the same batches through `sensormesh ingest` (a child process)
  from simulated gateways in client processes of their own, over real gRPC,
  with the live-feed NOTIFY on; and again with it off, to price it.
- ingest-columnar: the same batches in the upload's columnar form
  (`UploadReadingsRequest.columns`, converted beforehand by
  `sensormesh_core.columnar`), with NOTIFY as in `ingest`; reported as
  `columnar_*` beside the row form's figures, `columnar_copy_ratio` against the
  same round's COPY limit. Bytes on the wire per sample of each form come from
  the serialized batches.

Between phases the database is vacuumed, analyzed and checkpointed
(untimed), so no phase pays for the previous one's autovacuum. Each phase
runs `--rounds` times; the best round counts (these shared
machines are noisy, and noise only ever slows a run down). `ratio` is
ingest/copy. CPU seconds per process come with the figures, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from sensormesh.v1 import ingest_pb2

from ingest_service.app import IngestApp
from ingest_service.batch import Row
from ingest_service.settings import IngestSettings
from sensormesh_bench import workload
from sensormesh_bench.cpu import postmaster_pid
from sensormesh_bench.ingest.phases import (
    IngestProcess,
    Measurement,
    measure_copy,
    measure_ingest,
    profile_command,
)
from sensormesh_bench.targets import Target
from sensormesh_core.columnar import columnar_request
from sensormesh_core.storage import migrate
from sensormesh_core.storage.embedded import EmbeddedPostgres
from sensormesh_core.storage.live_signal import CHANNEL
from sensormesh_core.storage.maintenance import maintain, storage_backend
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.schema import READING_TABLES
from sensormesh_core.telemetry import configure_telemetry

TARGETS = [
    Target("samples_per_s", ">=", 300_000),
    Target("ratio", ">=", 0.8),
    Target("columnar_samples_per_s", ">=", 1_000_000),
    Target("columnar_copy_ratio", ">=", 0.8),
    Target("columnar_server_cpu_us_per_reading", "<=", 2.0),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="a migrated database to use (default: a temporary embedded one)"
    )
    parser.add_argument(
        "--devices", type=int, default=8, help="simulated gateways, one stream each (default 8)"
    )
    parser.add_argument("--seconds-of-data", type=int, default=300, help="data per device (default 300)")
    parser.add_argument("--batch-size", type=int, default=1000, help="readings per batch (default 1000)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat each phase, keep the best (default 3)")
    parser.add_argument(
        "--pool-size", type=int, default=None, help="the service's connection pool (default: its setting)"
    )
    parser.add_argument(
        "--notify", choices=["on", "off", "both"], default="both", help="live-feed NOTIFY (default both)"
    )
    parser.add_argument("--profile", type=Path, help="record the service with py-spy into this folder")
    parser.add_argument(
        "--columnar",
        choices=["on", "off"],
        default="on",
        help="also send the batches in columns (the columnar_* figures; default on)",
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-") as tmp:
        embedded = None
        if args.database_url:
            url = args.database_url
        else:
            embedded = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
            url = await asyncio.to_thread(embedded.url, "sensormesh_bench")
            await asyncio.to_thread(migrate.upgrade, url)
        try:
            return await _bench(args, url, embedded)
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)


async def _bench(args: argparse.Namespace, url: str, embedded: EmbeddedPostgres | None) -> dict[str, Any]:
    settings = IngestSettings(database_url=SecretStr(url), ingest_notify=False)
    pool_size = args.pool_size or settings.pool_max_size
    conn = await asyncpg.connect(url)
    try:
        backend = await storage_backend(conn)
        await maintain(conn, settings)
    finally:
        await conn.close()
    fleet = workload.fleet(args.seconds_of_data, time.time() - args.seconds_of_data - 120, args.batch_size)
    columnar = [columnar_request(b) for b in fleet.batches] if args.columnar == "on" else None
    postmaster = postmaster_pid(embedded.pgdata) if embedded is not None else None
    results: dict[str, list[Measurement]] = {}
    run_id = secrets.token_hex(3)
    profiles: dict[str, dict[str, Any]] = {}
    for round_number in range(args.rounds):
        for number, phase in enumerate(_phases(args.notify, round_number, columnar is not None)):
            devices = await _register(url, f"bench-{run_id}-{round_number}{number}", args.devices)
            if phase.startswith("copy"):
                rows = await _prepared_rows(settings, url, fleet, [d for d, _ in devices])
                connections = 1 if phase == "copy-one-connection" else min(args.devices, pool_size)
                measured = await measure_copy(
                    url, rows, connections, fleet.samples * args.devices, postmaster
                )
            else:
                notify = phase in ("ingest", "ingest-columnar") and args.notify != "off"
                profiling = args.profile if (args.profile and round_number == 0 and notify) else None
                if profiling is not None and phase == "ingest-columnar":
                    profiling = profiling / "columnar"
                measured, found = await _ingest(
                    args,
                    url,
                    pool_size,
                    fleet,
                    columnar if phase == "ingest-columnar" else None,
                    devices,
                    notify,
                    postmaster,
                    profiling,
                )
                if found is not None:
                    profiles[phase] = found
            results.setdefault(phase, []).append(measured)
            await _quiesce(url)
    report = _report(args, results, backend.value, pool_size, embedded is not None, profiles.get("ingest"))
    if columnar is not None:
        report |= _columnar_figures(results, fleet, columnar, profiles.get("ingest-columnar"))
    return report


def _phases(notify: str, round_number: int, columnar: bool) -> list[str]:
    """The phases of one round; the ingest runs swap order every round."""
    ingest = ["ingest", "ingest-no-notify"] if notify == "both" else ["ingest"]
    if columnar:
        ingest.append("ingest-columnar")
    if round_number % 2:
        ingest.reverse()
    return ["copy", "copy-one-connection", *ingest]


async def _quiesce(url: str) -> None:
    """Settle the database between phases, untimed: vacuum and analyze what the
    phase wrote and checkpoint, so that autovacuum and the checkpointer work
    for the phase that caused them, not during the next one."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(READING_TABLES)}")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _register(url: str, prefix: str, count: int) -> list[tuple[str, str]]:
    """Register `count` devices; returns (device id, token) pairs."""
    conn = await asyncpg.connect(url)
    try:
        devices = []
        for number in range(count):
            record, token = await create_device(conn, f"{prefix}-{number}")
            devices.append((record.device_id, token))
        return devices
    finally:
        await conn.close()


async def _prepared_rows(
    settings: IngestSettings, url: str, fleet: workload.Fleet, device_ids: list[str]
) -> list[list[dict[str, list[Row]]]]:
    """The rows the service would write for each device's batches (its decoder, its ids)."""
    app = await IngestApp.open(settings, url, configure_telemetry("sensormesh-bench", set_global=False))
    try:
        per_device = []
        for device_id in device_ids:
            batches = []
            for batch in fleet.batches:
                batch.device_id = device_id
                batches.append((await app.preparer.upload(batch)).rows)
            per_device.append(batches)
        return per_device
    finally:
        await app.close()


async def _ingest(
    args: argparse.Namespace,
    url: str,
    pool_size: int,
    fleet: workload.Fleet,
    columnar: list[ingest_pb2.UploadReadingsRequest] | None,
    devices: list[tuple[str, str]],
    notify: bool,
    postmaster: int | None,
    profiling: Path | None,
) -> tuple[Measurement, dict[str, Any] | None]:
    """One ingest phase: a fresh service process, the fleet's batches (in `columnar` form
    if given) through it, and the live-feed notifications it sent counted; a profile if
    `profiling`."""
    max_message = max(8 * 1024 * 1024, args.batch_size * 512)
    server = IngestProcess(_server_env(url, notify, pool_size, args.batch_size, max_message))
    await server.start()
    heard: list[str] = []
    listener = await _listen(url, heard)
    sent = columnar if columnar is not None else fleet.batches
    streams = [(token, workload.serialized(sent, device_id)) for device_id, token in devices]
    profile = None
    spy: asyncio.subprocess.Process | None = None
    raw = profiling / "ingest.raw" if profiling else None
    try:
        spy = await _start_profiler(server.pid, raw)
        measured = await measure_ingest(
            server,
            streams,
            args.clients,
            max_message,
            fleet.rows * len(devices),
            fleet.samples * len(devices),
            postmaster,
        )
    finally:
        await _stop_profiler(spy)
        await server.stop()  # flushes the last signals
        await _close_listener(listener)
    measured.extra["notifications"] = len(heard)
    measured.extra["batches"] = len(fleet.batches) * len(devices)
    measured.extra["batches_per_transaction"] = _batches_per_transaction(server.log_text())
    if raw is not None and raw.exists():
        profile = summarize_profile(raw)
    return measured, profile


_TRANSACTIONS = re.compile(r"event=batch_transactions transactions=(\d+) batches=(\d+)")


def _batches_per_transaction(log_text: str) -> float | None:
    """How many batches the service's transactions held on average (group commit), from its closing log line."""
    found = _TRANSACTIONS.search(log_text)
    if found is None or not int(found.group(1)):
        return None
    return round(int(found.group(2)) / int(found.group(1)), 2)


def _server_env(url: str, notify: bool, pool_size: int, batch_size: int, max_message: int) -> dict[str, str]:
    """The service's settings for a phase: the pool the copy phase is sized by, and
    limits that let every batch of `batch_size` readings through in one message."""
    return {
        "SENSORMESH_DATABASE_URL": url,
        "SENSORMESH_INGEST_NOTIFY": "true" if notify else "false",
        "SENSORMESH_POOL_MAX_SIZE": str(pool_size),
        "SENSORMESH_POOL_MIN_SIZE": str(min(2, pool_size)),
        "SENSORMESH_INGEST_MAX_MESSAGE_BYTES": str(max_message),
        "SENSORMESH_INGEST_MAX_BATCH_READINGS": str(max(10_000, batch_size)),
    }


async def _listen(url: str, heard: list[str]) -> asyncpg.Connection:
    """A connection that collects the service's live-feed notifications into `heard`,
    so the report can show the NOTIFY phase really sent them."""
    listener = await asyncpg.connect(url)
    await listener.add_listener(CHANNEL, lambda *args: heard.append(args[3]))
    return listener


async def _close_listener(listener: asyncpg.Connection) -> None:
    """Close the listener once the notifications the stopped service sent have all been heard."""
    await listener.execute("SELECT 1")  # notifications sent before this have arrived
    await listener.close()


async def _start_profiler(pid: int, raw: Path | None) -> asyncio.subprocess.Process | None:
    """py-spy sampling the service into `raw`, if a profile was asked for and py-spy is installed."""
    command = profile_command(pid, raw) if raw else None
    if raw is None or command is None:
        return None
    raw.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


async def _stop_profiler(spy: asyncio.subprocess.Process | None) -> None:
    """Stop py-spy, if it runs, the one way that makes it write what it recorded."""
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        await spy.wait()


# Where a batch's server time goes, by the functions that contain it.
PROFILE_PARTS = {
    "decode (hot loop)": ("decode_fast", "column_arrays", "decode_entries"),
    "COPY (encode and send rows)": ("Connection.copy_records_to_table", "Connection.copy_to_table"),
    "other statements (lock, record, commit)": ("AsyncPGInstrumentor._do_execute", "Transaction.__aenter__"),
    "spans and metrics": (
        "Tracer.start_span",
        "Tracer.start_as_current_span",
        "Span.end",
        "IngestMetrics.record_batch",
    ),
    "batch checks (protovalidate on the batch's own fields)": ("Preparer.upload_head_violations",),
}


def summarize_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """Shares of the server's sampled Python time: by part of the work (inclusive)
    and by function (self time), from py-spy's collapsed stacks."""
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame.partition(" (")[0] for frame in stack.split(";")]
        for part, functions in PROFILE_PARTS.items():
            if any(f in functions for f in frames):
                parts[part] += int(count)
                break
        else:
            parts["gRPC, asyncio and the rest"] += int(count)
        name, _, where = stack.rsplit(";", 1)[-1].partition(" (")
        own[f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})"] += int(count)
        total += int(count)
    if not total:
        return {"samples": 0, "raw": str(raw)}
    return {
        "samples": total,
        "parts": {name: round(count / total, 3) for name, count in parts.most_common()},
        "self_share": {name: round(count / total, 3) for name, count in own.most_common(top)},
        "raw": str(raw),
    }


def _columnar_figures(
    results: dict[str, list[Measurement]],
    fleet: workload.Fleet,
    columnar: list[ingest_pb2.UploadReadingsRequest],
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """The columnar phase's figures, beside the row form's: its best round against the best
    COPY round, CPU per reading, and bytes on the wire per sample of each form."""
    best = {phase: max(found, key=lambda m: m.samples_per_s) for phase, found in results.items()}
    columns, copy, one = best["ingest-columnar"], best["copy"], best["copy-one-connection"]
    figures: dict[str, Any] = {
        "columnar_samples_per_s": round(columns.samples_per_s),
        "columnar_rows_per_s": round(columns.rows_per_s),
        "columnar_seconds": round(columns.seconds, 3),
        "columnar_copy_ratio": round(columns.samples_per_s / copy.samples_per_s, 3),
        "columnar_ratio_to_one_connection": round(columns.samples_per_s / one.samples_per_s, 3),
        "columnar_to_rows_ratio": round(columns.samples_per_s / best["ingest"].samples_per_s, 3),
        "rows_bytes_per_sample": round(sum(b.ByteSize() for b in fleet.batches) / fleet.samples, 2),
        "columnar_bytes_per_sample": round(sum(b.ByteSize() for b in columnar) / fleet.samples, 2),
        "columnar_all_rounds_samples_per_s": [round(m.samples_per_s) for m in results["ingest-columnar"]],
        "columnar_batches_per_transaction": columns.extra.get("batches_per_transaction"),
    }
    per_row = 1e6 / columns.rows
    for name, value in (
        ("columnar_server_cpu_us_per_reading", columns.server_cpu),
        ("columnar_postgres_cpu_us_per_reading", columns.postgres_cpu),
        ("columnar_clients_cpu_us_per_reading", columns.clients_cpu),
    ):
        if value is not None:
            figures[name] = round(value * per_row, 2)
    if profile is not None:
        figures["columnar_profile"] = profile
    return figures


def _cpu_per_reading(m: Measurement) -> float | None:
    if m.server_cpu is None or m.postgres_cpu is None:
        return None
    return (m.server_cpu + m.postgres_cpu) * 1e6 / m.rows


def _report(
    args: argparse.Namespace,
    results: dict[str, list[Measurement]],
    backend: str,
    pool_size: int,
    embedded: bool,
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """The figures `sensormesh bench ingest` prints: each phase's best round (noise
    only ever slows a run down), then every round, for judging the spread."""
    best = {phase: max(found, key=lambda m: m.samples_per_s) for phase, found in results.items()}
    report = _throughput_figures(args, best, pool_size)
    report |= _run_figures(args, best["ingest"], backend, embedded)
    report |= _cpu_figures(best["ingest"], best["copy"])
    if "ingest-no-notify" in best:
        report |= _notify_figures(best, results)
    report["all_rounds_samples_per_s"] = {
        phase: [round(m.samples_per_s) for m in found] for phase, found in results.items()
    }
    if profile is not None:
        report["profile"] = profile
    return report


def _throughput_figures(
    args: argparse.Namespace, best: dict[str, Measurement], pool_size: int
) -> dict[str, Any]:
    """Ingest's throughput against the COPY limit on as many connections as the
    service may use, and on one connection."""
    ingest, copy, one = best["ingest"], best["copy"], best["copy-one-connection"]
    return {
        "samples_per_s": round(ingest.samples_per_s),
        "rows_per_s": round(ingest.rows_per_s),
        "copy_limit_samples_per_s": round(copy.samples_per_s),
        "copy_limit_rows_per_s": round(copy.rows_per_s),
        "ratio": round(ingest.samples_per_s / copy.samples_per_s, 3),
        "batch_size": args.batch_size,
        "devices": args.devices,
        "samples": ingest.samples,
        "rows": ingest.rows,
        "seconds": round(ingest.seconds, 3),
        "copy_connections": min(args.devices, pool_size),
        "copy_one_connection_samples_per_s": round(one.samples_per_s),
        "ratio_to_one_connection": round(ingest.samples_per_s / one.samples_per_s, 3),
    }


def _run_figures(
    args: argparse.Namespace, ingest: Measurement, backend: str, embedded: bool
) -> dict[str, Any]:
    """How the run was set up, and what the best ingest round sent, for reading the figures."""
    return {
        "client_processes": args.clients,
        "rounds": args.rounds,
        "database": f"{'embedded' if embedded else 'given'} PostgreSQL, {backend}",
        "notify": args.notify != "off",
        "notifications": ingest.extra.get("notifications"),
        "batches": ingest.extra.get("batches"),
        "batches_per_transaction": ingest.extra.get("batches_per_transaction"),
    }


def _cpu_figures(ingest: Measurement, copy: Measurement) -> dict[str, float]:
    """CPU microseconds per reading of each process whose CPU time could be read."""
    per_row = 1e6 / ingest.rows
    figures = {}
    for name, value in (
        ("server_cpu_us_per_reading", ingest.server_cpu),
        ("postgres_cpu_us_per_reading", ingest.postgres_cpu),
        ("clients_cpu_us_per_reading", ingest.clients_cpu),
        ("copy_postgres_cpu_us_per_reading", copy.postgres_cpu),
    ):
        if value is not None:
            figures[name] = round(value * per_row, 2)
    return figures


def _notify_figures(best: dict[str, Measurement], results: dict[str, list[Measurement]]) -> dict[str, Any]:
    """What the live-feed NOTIFY costs: in throughput (best rounds) and in CPU per reading."""
    ingest, quiet = best["ingest"], best["ingest-no-notify"]
    figures: dict[str, Any] = {
        "samples_per_s_without_notify": round(quiet.samples_per_s),
        "notify_cost": round(1 - ingest.samples_per_s / quiet.samples_per_s, 3),
    }
    with_notify = [c for m in results["ingest"] if (c := _cpu_per_reading(m)) is not None]
    without = [c for m in results["ingest-no-notify"] if (c := _cpu_per_reading(m)) is not None]
    if with_notify and without:
        # CPU is steadier than throughput on a shared machine: compare the medians.
        difference = statistics.median(with_notify) - statistics.median(without)
        figures["notify_cpu_us_per_reading"] = round(difference, 3)
    return figures
