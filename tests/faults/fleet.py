"""Real `sensormesh agent` processes with simulated sensors, each with a ledger tap on its buffer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from sensormesh_core.storage.registry import create_device
from tests.faults.accounting import Account, account, unsent_reports
from tests.faults.ledger import LedgerTap, install_ledger
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

# 100 Hz IMU, 10 Hz environment and generic measurement, system every 0.5 s: every payload kind,
# 122 readings a second per agent. Short batches, streams, timeouts and backoff so that a fault
# and the recovery from it both fit in seconds.
CONFIG = """
device_id = "{device_id}"
input_retry_initial = "100ms"
stop_timeout = "10s"

[uplink]
  target = "{target}"
  tls = false
  batch_max_age = "200ms"
  stream_max_duration = "2s"
  ack_timeout = "3s"
  backoff_initial = "100ms"
  backoff_max = "1s"

[buffer]
  path = "{buffer}"
  commit_interval = "50ms"
  disk_budget = "{disk_budget}"

[[inputs.simulated]]
  kind = "imu"
  interval = "{imu_interval}"

[[inputs.simulated]]
  kind = "environment"
  interval = "100ms"

[[inputs.simulated]]
  kind = "system"
  interval = "500ms"

[[inputs.simulated]]
  kind = "generic"
  sensor = "soil-probe"
  interval = "100ms"
"""


@dataclass
class AgentProcess:
    """One gateway: its registration, its config, its buffer's ledger and its process."""

    device_id: str
    token: str
    folder: Path
    tap: LedgerTap
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def log_path(self) -> Path:
        return self.folder / "agent.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sensormesh_cli",
                    "agent",
                    "--config",
                    str(self.folder / "agent.toml"),
                ],
                cwd=ROOT,
                env={**os.environ, "SENSORMESH_AGENT_TOKEN": self.token},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: whatever the agent was doing (a group commit, a stream) stops mid-way."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.kills += 1

    async def stop(self, within_s: float = 30.0) -> int:
        """SIGTERM: the agent commits what it holds and lets its last stream be acknowledged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, within_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.device_id} did not stop on SIGTERM:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Fleet:
    """Gateways uploading to `target` (the ingest service, or a proxy in front of it)."""

    database_url: str
    target: str
    folder: Path
    disk_budget: str = "64MiB"
    imu_interval: str = "10ms"
    extra_inputs: str = ""  # more [[inputs.*]] tables for every agent
    agents: list[AgentProcess] = field(default_factory=list)

    async def add(self, count: int) -> list[AgentProcess]:
        """Register `count` devices and prepare their agents (not started)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            for _ in range(count):
                number = len(self.agents)
                record, token = await create_device(conn, f"fault-{number}")
                folder = self.folder / record.device_id
                folder.mkdir(parents=True)
                (folder / "agent.toml").write_text(
                    CONFIG.format(
                        device_id=record.device_id,
                        target=self.target,
                        buffer=folder / "buffer.sqlite3",
                        disk_budget=self.disk_budget,
                        imu_interval=self.imu_interval,
                    )
                    + self.extra_inputs
                )
                tap = await install_ledger(folder / "buffer.sqlite3")
                self.agents.append(AgentProcess(record.device_id, token, folder, tap))
        finally:
            await conn.close()
        return self.agents[-count:]

    def start(self) -> None:
        for agent in self.agents:
            agent.start()

    async def _marks(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Each device's committed sequence on the server."""
        rows = await conn.fetch(
            "SELECT device_id, committed_sequence FROM upload_offsets WHERE device_id = ANY($1)",
            [a.device_id for a in self.agents],
        )
        return {r["device_id"]: int(r["committed_sequence"]) for r in rows}

    async def _all_reached(self, conn: asyncpg.Connection, targets: dict[str, int]) -> bool:
        now = await self._marks(conn)
        return all(now[d] >= mark for d, mark in targets.items())

    async def wait_for_progress(self, readings: int, within: float = 60.0) -> None:
        """Until every device's mark has moved `readings` past where it is now (one connection polls)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            targets = {d: mark + readings for d, mark in (await self._marks(conn)).items()}
            what = f"every device committed {readings} more readings"
            await wait_until(lambda: self._all_reached(conn, targets), within, what)
        finally:
            await conn.close()

    async def wait_for_delivery(self, within: float = 60.0) -> None:
        """Until every device's mark has reached what its agent had taken when this was called."""
        targets = {a.device_id: a.tap.last_id() + a.tap.sequence_base() for a in self.agents}
        conn = await asyncpg.connect(self.database_url)
        try:
            what = f"every device's backlog delivered: {targets}"
            await wait_until(lambda: self._all_reached(conn, targets), within, what)
        finally:
            await conn.close()

    async def _reports_sent(self, conn: asyncpg.Connection) -> bool:
        marks = await self._marks(conn)
        return not any(unsent_reports(a.tap.path, marks[a.device_id]) for a in self.agents)

    async def wait_for_reports(self, within: float = 30.0) -> None:
        """Until every thinning report in the agents' buffers has gone out with an acknowledged batch
        (the last thinning of a drain is reported with the batch after it)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await wait_until(lambda: self._reports_sent(conn), within, "every thinning report acknowledged")
        finally:
            await conn.close()

    async def stop_and_account(self) -> list[Account]:
        """Stop every agent in order, then account for every reading each one took."""
        codes = await asyncio.gather(*(a.stop() for a in self.agents))
        for agent, code in zip(self.agents, codes, strict=True):
            assert code == 0, f"{agent.device_id} exited {code}:\n{agent.log_tail()}"
        conn = await asyncpg.connect(self.database_url)
        try:
            return [await account(conn, a.device_id, a.tap) for a in self.agents]
        finally:
            await conn.close()

    def kill_all(self) -> None:
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                agent.kill()
        for agent in self.agents:
            agent.tap.close()
