"""The real Prometheus Alertmanager (Debian's prometheus-alertmanager, which `make setup` installs),
started by a test on free ports with a config that routes everything to a receiver that
drops it: the API is what the tests look at."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port

BINARY = "prometheus-alertmanager"
CONFIG = """
route:
  receiver: drop
  group_wait: 0s
receivers:
  - name: drop
"""


class Alertmanager:
    """One Alertmanager process; `url` is its API's base."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            pytest.fail(
                f"{BINARY} is missing: run `make setup` (it installs Debian's prometheus-alertmanager)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "alertmanager.yml").write_text(CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "alertmanager.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'alertmanager.yml'}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # one instance, no gossip port
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.log_path.read_text(errors="replace")[-2000:])
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"alertmanager not ready:\n{self.log_path.read_text(errors='replace')[-2000:]}")

    def alerts(self, **filters: Any) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (active ones by default, as Alertmanager answers)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=5)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
