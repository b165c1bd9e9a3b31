"""`sensormesh up` as a real subprocess: its terminal output, the commands it prints, its processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.ports import free_port

READY_LINE = "Ctrl-C stops everything"


@dataclass(frozen=True)
class Ports:
    http: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    ingest: int = field(default_factory=free_port)
    query: int = field(default_factory=free_port)
    control: int = field(default_factory=free_port)
    console: int = field(default_factory=free_port)

    def flags(self) -> list[str]:
        return [
            "--http",
            str(self.http),
            "--admin",
            str(self.admin),
            "--ingest",
            str(self.ingest),
            "--query",
            str(self.query),
            "--control",
            str(self.control),
            "--console",
            str(self.console),
        ]


class UpProcess:
    """Runs `sensormesh up` in `cwd`; collects what it prints, line by line, on a thread."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [*self.command(), *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    @staticmethod
    def command() -> list[str]:
        return [sys.executable, "-m", "sensormesh_cli", "up"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self._queue.put(text.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, fragment: str, timeout: float) -> str:
        """Every line printed so far once one contains `fragment`; AssertionError with the output if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if text is None:
                break
            self.lines.append(text)
            if fragment in text:
                return self.output
        raise AssertionError(f"no {fragment!r} within {timeout:.0f} s; output:\n{self.output}")

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def commands(self) -> list[str]:
        """The copy-paste commands of the banner: indented lines that are not comments."""
        start = self.output.index("Try (copy and paste):")
        return [
            text.strip()
            for text in self.output[start:].splitlines()
            if text.startswith("    ") and text.strip() and not text.strip().startswith("#")
        ]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C, then the exit status and the rest of the output."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        self.drain()
        return code

    def drain(self) -> None:
        while True:
            try:
                text = self._queue.get(timeout=5)
            except queue.Empty:
                return
            if text is None:
                return
            self.lines.append(text)

    def close(self) -> None:
        """After a failed test: stop in order if it still runs (so PostgreSQL stops too), else kill."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            for child in self.descendants():
                child.kill()
            self.process.kill()
            self.process.wait()


def gone(process: psutil.Process) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (not running)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def postmaster(data_dir: Path) -> psutil.Process | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return psutil.Process(int(pid_file.read_text().split()[0]))
