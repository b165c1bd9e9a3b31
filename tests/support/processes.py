"""Run `sensormesh <command>` as a real subprocess and find the port it bound."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

# `event=query_serving ... port=N` (query) or `event=ingest_listening ... port=N` (ingest).
_SERVING = re.compile(r"event=\w+_(?:serving|listening) .*port=(\d+)")


class ServiceProcess:
    """A sensormesh service in its own process; its log goes to a file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sensormesh_cli", *command],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.port = 0

    def wait_serving(self, timeout: float = 30.0) -> int:
        """The bound port, from the service's `event=..._serving port=N` (or `_listening`) line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _SERVING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"service did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
