"""Child processes of `sensormesh up`: one program each, its output in a log file.

Each child runs in its own process group, so Ctrl-C at the terminal reaches
only `sensormesh up`, which then stops the children in order (agents before
the services they talk to, the database last). On Linux a child also gets
SIGTERM if `sensormesh up` dies without stopping it (kill -9), so nothing is
left running: asked for by die_with_parent.py, through which every child starts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def sensormesh_argv(*args: str) -> list[str]:
    """`sensormesh <args>` with this interpreter, so children use the same environment."""
    return [sys.executable, "-m", "sensormesh_cli", *args]


class Child:
    """A program started by `sensormesh up`; `stop()` ends it within a deadline."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._argv = list(argv)
        self._env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self._cwd = cwd
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._terminated = False
        with self.log_path.open("ab") as output:
            output.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {self.name}\n".encode())
            output.flush()
            process = subprocess.Popen(  # noqa: S603 - our own programs
                [sys.executable, "-m", "sensormesh_cli.stack.die_with_parent", str(os.getpid()), *self._argv],
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        log.info("event=child_started name=%s pid=%d log=%s", self.name, process.pid, self.log_path)
        return process

    def restart(self) -> None:
        """Start the program again, the same way, after it exited (its log continues)."""
        if self.process.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        self.process = self._spawn()

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.process.poll()

    def terminate(self) -> None:
        """Send SIGTERM once (a second one could cut a service's graceful stop short)."""
        if not self._terminated and self.process.poll() is None:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit status."""
        self.terminate()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("event=child_killed name=%s pid=%d after_s=%.1f", self.name, self.pid, timeout_s)
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        log.info("event=child_stopped name=%s pid=%d status=%d", self.name, self.pid, code)
        return code

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log, for an error message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
