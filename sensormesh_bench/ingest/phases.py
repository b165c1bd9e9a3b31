"""The benchmark's two measurements: the same batches through the ingest
service (a `sensormesh ingest` process, clients in processes of their own),
and COPYed straight into the same tables.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from ingest_service.batch import Row
from ingest_service.pg_time import install_codec
from ingest_service.writer import COLUMNS
from sensormesh_bench.cpu import process_cpu, tree_cpu
from sensormesh_bench.ingest import client

_LISTENING = re.compile(r"event=ingest_listening .*port=(\d+)")


@dataclass
class Measurement:
    """One phase's figures."""

    seconds: float
    rows: int
    samples: int
    server_cpu: float | None = None
    postgres_cpu: float | None = None
    clients_cpu: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


class IngestProcess:
    """`sensormesh ingest` in a child process, on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = {**os.environ, **env, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0"}
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self._log: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensormesh_cli", "ingest", env=self._env, stderr=asyncio.subprocess.PIPE
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(60):
            while not self.port:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("sensormesh ingest exited:\n" + "".join(self._log))
                self._log.append(line)
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
        self._drain = asyncio.create_task(self._keep_reading())

    async def _keep_reading(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self._log.append(line.decode())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await self.process.wait()
        if self._drain is not None:
            await self._drain

    def log_text(self) -> str:
        return "".join(self._log)


async def run_clients(
    address: str,
    streams: list[tuple[str, list[bytes]]],
    processes: int,
    max_message_bytes: int,
    around: Callable[[], Awaitable[None]] | None = None,
) -> list[client.ClientResult]:
    """Stream from `processes` client processes at once; returns once all finished.

    The client processes connect and wait for a common "go", so start-up is
    not measured. `around` runs just before "go" (a CPU snapshot, a profiler).
    """
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for number in range(processes):
        parent, child = context.Pipe()
        worker = context.Process(target=client.main, args=(child,), daemon=True)
        worker.start()
        parent.send(client.ClientJob(address, max_message_bytes, streams[number::processes]))
        pipes.append(parent)
        workers.append(worker)
    loop = asyncio.get_running_loop()
    try:
        for pipe in pipes:
            if await loop.run_in_executor(None, pipe.recv) != "ready":
                raise RuntimeError("benchmark client failed to start")
        if around is not None:
            await around()
        for pipe in pipes:
            pipe.send("go")
        return [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()


async def measure_ingest(
    server: IngestProcess,
    streams: list[tuple[str, list[bytes]]],
    processes: int,
    max_message_bytes: int,
    rows: int,
    samples: int,
    postmaster: int | None,
) -> Measurement:
    """Send `streams` through the running service and time it from "go" to the last response."""
    before: dict[str, float | None] = {}

    async def snapshot() -> None:
        before["server"] = process_cpu(server.pid)
        before["postgres"] = tree_cpu(postmaster) if postmaster else None

    results = await run_clients(f"127.0.0.1:{server.port}", streams, processes, max_message_bytes, snapshot)
    server_cpu = _delta(process_cpu(server.pid), before["server"])
    postgres_cpu = _delta(tree_cpu(postmaster) if postmaster else None, before["postgres"])
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"upload failed: {errors[0]}\n{server.log_text()[-4000:]}")
    accepted = sum(r.accepted for r in results)
    if accepted != rows:
        raise RuntimeError(f"the service stored {accepted} readings of {rows} sent")
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    return Measurement(
        elapsed,
        rows,
        samples,
        server_cpu,
        postgres_cpu,
        sum(r.cpu_seconds for r in results),
        {"duplicates": sum(r.duplicates for r in results), "rejected": sum(r.rejected for r in results)},
    )


async def measure_copy(
    url: str,
    per_device: list[list[dict[str, list[Row]]]],
    connections: int,
    samples: int,
    postmaster: int | None,
) -> Measurement:
    """COPY the prepared rows straight: a transaction per batch, one COPY per table,
    devices spread over `connections` connections as the service spreads streams."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        for conn in conns:
            await install_codec(conn)

        async def write(conn: asyncpg.Connection, devices: list[list[dict[str, list[Row]]]]) -> None:
            for batches in devices:
                for batch in batches:
                    async with conn.transaction():
                        for table, rows in batch.items():
                            await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])

        async def per_connection(index: int) -> None:
            await write(conns[index], per_device[index::connections])

        before = tree_cpu(postmaster) if postmaster else None
        began = time.perf_counter()
        await asyncio.gather(*(per_connection(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
        postgres_cpu = _delta(tree_cpu(postmaster) if postmaster else None, before)
    finally:
        for conn in conns:
            await conn.close()
    rows = sum(len(r) for batches in per_device for batch in batches for r in batch.values())
    return Measurement(elapsed, rows, samples, postgres_cpu=postgres_cpu)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def profile_command(pid: int, output: Path) -> list[str] | None:
    """A py-spy command sampling `pid` into `output` (collapsed stacks), if py-spy is installed."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        return None
    return [
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
        "--threads",
    ]
