"""`sensormesh agent` as a real process against the ingest double: kill -9, restart, orderly stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.gateway_agent.conftest import DEVICE_ID, TOKEN, Ingest
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
device_id = "{device_id}"

[uplink]
  target = "{target}"
  tls = false
  batch_max_age = "100ms"
  stream_max_duration = "1s"
  backoff_initial = "50ms"
  backoff_max = "500ms"

[buffer]
  path = "{buffer}"
  commit_interval = "50ms"

[[inputs.simulated]]
  kind = "imu"
  interval = "10ms"

[[inputs.simulated]]
  kind = "environment"
  interval = "100ms"

[[inputs.cpu_temp]]
  zone = "{missing}"
"""


async def start_agent(config: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "SENSORMESH_AGENT_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "agent", "--config", str(config),
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture
def config(ingest: Ingest, tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        CONFIG.format(
            device_id=DEVICE_ID,
            target=ingest.target,
            buffer=tmp_path / "buffer.sqlite3",
            missing=tmp_path / "no-zone",
        )
    )
    return path


async def test_killed_and_restarted_agent_delivers_every_reading_exactly_once(
    ingest: Ingest, config: Path, tmp_path: Path
) -> None:
    double = ingest.servicer
    agent = await start_agent(config)
    try:
        await until(lambda: double.committed >= 300, seconds=60)
    finally:
        agent.kill()  # SIGKILL, mid-write: the simulated IMU takes 100 readings a second
        await agent.wait()
    killed_at = double.committed

    conn = sqlite3.connect(tmp_path / "buffer.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    agent = await start_agent(config)
    try:
        await until(lambda: double.committed >= killed_at + 300, seconds=60)
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await agent.communicate()
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    log = stderr.decode()
    assert agent.returncode == 0, log
    assert "event=agent_stopped" in log

    # An orderly stop commits what it holds and lets its last stream be acknowledged: nothing is left over.
    conn = sqlite3.connect(tmp_path / "buffer.sqlite3")
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
    conn.close()

    assert double.stored_twice == 0
    # Every number up to the mark was stored once: no gap from the kill, no repeat from the restart.
    assert sorted(double.stored) == list(range(1, double.committed + 1))
    sensors = {r.sensor for r in double.stored.values()}
    assert sensors == {"sim-imu", "sim-environment"}
    # The input without a thermal zone is reported failing; the others are fine.
    states = {s.input: s.state for s in double.statuses}
    assert states["cpu_temp"] == 2 and states["sim-imu"] == 1
    assert "event=input_failed input=cpu_temp" in log


async def test_bad_configuration_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "pi"\ntoken = "t"\n[[inputs.bme280]]\naddress = 0x40\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "agent", "--config", str(path),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert "inputs.bme280[0].address: Invalid enum value 64; expected 118 or 119" in stderr.decode()
