"""Where `sensormesh bench query` gets its data: seeding, the probe and the background load.

The benchmark needs three things written the way ingest writes them: a day of
history to read, a probe that commits single readings and notes when each
commit was acknowledged, and a steady background load. Until the ingest
service exists they come from the ingest-like writer in `tests/support`
(so the benchmark runs from a source checkout); `LoadSource` and `Probe` are
the seams where the real ingest service and an upload client plug in.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from sensormesh_core.storage.registry import create_device

DAY = timedelta(days=1)


class LoadSource(Protocol):
    """A steady write load on some devices, running in another process."""

    name: str

    def start(self, devices: list[str], samples_per_s: float, seconds: float) -> None: ...

    def finish(self) -> dict[str, Any]:
        """Wait for the load to end; what it achieved (samples_per_s, ...)."""
        ...


class Probe(Protocol):
    """Commits one reading at a time and says when the commit was acknowledged."""

    async def commit(self, device_id: str, sample_time: datetime) -> float: ...


REPO_ROOT = Path(__file__).resolve().parent.parent


def _writer_module() -> Any:
    if (REPO_ROOT / "tests" / "support").is_dir() and str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    try:
        from tests.support import reading_writer
    except ImportError as exc:  # an installed package without the repository's tests/
        raise RuntimeError(
            "the query benchmark writes its data with tests/support/reading_writer.py until the ingest "
            "service drives it: run it from a source checkout (`make bench`)"
        ) from exc
    return reading_writer


class WriterLoad:
    """The background load from `python -m tests.support.load` (ingest-like writes)."""

    name = "test-writer"

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._process: subprocess.Popen[str] | None = None

    def start(self, devices: list[str], samples_per_s: float, seconds: float) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.support.load",
            "--database-url",
            self._url,
            "--devices",
            ",".join(devices),
            "--samples-per-s",
            str(samples_per_s),
            "--seconds",
            str(seconds),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # noqa: S603

    def finish(self) -> dict[str, Any]:
        assert self._process is not None
        out, _ = self._process.communicate(timeout=300)
        if self._process.returncode != 0:
            raise RuntimeError(f"load process failed with {self._process.returncode}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


class WriterProbe:
    """Probe commits through the ingest-like writer, on its own connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._writer = _writer_module().ReadingWriter(conn)
        self._reading = _writer_module().environment

    async def commit(self, device_id: str, sample_time: datetime) -> float:
        commit = await self._writer.write(device_id, [self._reading("probe", sample_time, 20.0)])
        return float(commit.commit_time)


async def seed_history(conn: asyncpg.Connection, device_id: str, end: datetime) -> None:
    """One day of 1 Hz temperature readings (86,400) ending at `end`, in batches."""
    module = _writer_module()
    writer = module.ReadingWriter(conn)
    start = end - DAY
    batch = 10_000
    for first in range(0, 86_400, batch):
        readings = [
            module.environment("bme280", start + timedelta(seconds=i), 20.0 + (i % 600) / 100)
            for i in range(first, min(first + batch, 86_400))
        ]
        await writer.write(device_id, readings, notify=False)


async def register(conn: asyncpg.Connection, device_ids: list[str]) -> None:
    for device_id in device_ids:
        await create_device(conn, device_id)


def day_end() -> datetime:
    """The end of the seeded day: the last full minute."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


async def wait_until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark setup did not finish in time")
        await asyncio.sleep(0.01)
