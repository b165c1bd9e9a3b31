"""`sensormesh up` for `sensormesh bench console`: in a folder of its own, on free ports, as
tests/console starts it; its admin key and database URL read from what it wrote and printed."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_LINE = "Ctrl-C stops everything"  # the last line of `sensormesh up`'s banner
# A cold first start (the embedded PostgreSQL, the first readings of every simulated device).
UP_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class ConsoleStack:
    url: str  # the console, on Envoy's listener
    admin_key: str
    database_url: str
    ingest_port: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_banner(process: subprocess.Popen[str], timeout: float) -> str:
    """Everything `sensormesh up` printed up to its ready line."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            lines.put(text.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if text is None:
            break
        seen.append(text)
        if READY_LINE in text:
            return "\n".join(seen)
    tail = "\n".join(seen[-40:])
    raise RuntimeError(f"`sensormesh up` was not ready within {timeout:.0f} s:\n{tail}")


@contextmanager
def running_stack(folder: Path) -> Iterator[ConsoleStack]:
    """`sensormesh up` in `folder` until the block ends; then Ctrl-C (so PostgreSQL stops too)."""
    ports = {name: _free_port() for name in ("http", "admin", "ingest", "query", "control", "console")}
    flags = [item for name, port in ports.items() for item in (f"--{name}", str(port))]
    process = subprocess.Popen(
        [sys.executable, "-m", "sensormesh_cli", "up", *flags],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _wait_for_banner(process, UP_TIMEOUT_S)
        database = re.search(r"postgresql://\S+", output)
        if database is None:
            raise RuntimeError(f"no database URL in `sensormesh up`'s banner:\n{output}")
        yield ConsoleStack(
            url=f"http://127.0.0.1:{ports['http']}/",
            admin_key=(folder / ".sensormesh" / "admin.key").read_text().strip(),
            database_url=database.group(0),
            ingest_port=ports["ingest"],
        )
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
