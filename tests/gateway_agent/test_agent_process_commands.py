"""`sensormesh agent --simulate` as a real process taking commands: the built-ins answer, and an agent
killed with SIGKILL while a command runs reports it FAILED after its restart and never runs it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sensormesh.v1.command_pb2 import CommandState

from gateway_agent.commands.link import INTERRUPTED
from tests.gateway_agent.conftest import DEVICE_ID, TOKEN, CommandService
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
device_id = "{device_id}"
stop_timeout = "2s"

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

[[commands.program]]
  name = "nap"
  description = "Sleep, writing its pid first (so the test can clean up after a SIGKILL)."
  argv = ["/bin/sh", "-c", "echo $$ > \\"$0\\"; exec sleep \\"$1\\"", "{pid_file}", "{{seconds}}"]
  timeout = "60s"
  [[commands.program.parameters]]
    name = "seconds"
    type = "number"
    required = true
    maximum = 60
"""


@dataclass
class AgentProcess:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@contextlib.asynccontextmanager
async def agent_process(config: Path) -> AsyncIterator[AgentProcess]:
    env = {**os.environ, "SENSORMESH_AGENT_TOKEN": TOKEN}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "agent", "--simulate", "--config", str(config),
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    handle = AgentProcess(process)

    async def read() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            handle.lines.append(line.decode())

    handle.reader = asyncio.create_task(read())
    try:
        yield handle
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await handle.reader


@pytest.fixture
def config(command_service: CommandService, tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        CONFIG.format(
            device_id=DEVICE_ID,
            target=command_service.target,
            buffer=tmp_path / "buffer.sqlite3",
            pid_file=tmp_path / "nap.pid",
        )
    )
    return path


async def test_a_simulated_agent_answers_the_built_ins(command_service: CommandService, config: Path) -> None:
    double = command_service.servicer
    async with agent_process(config) as agent:
        await until(lambda: double.connected, seconds=60)
        assert [c.name for c in double.hellos[-1].commands][-1] == "nap"
        ping, status = double.send("ping"), double.send("status")
        read = double.send("read_now", {"input": "sim-environment"})
        done = (CommandState.COMMAND_STATE_SUCCEEDED, CommandState.COMMAND_STATE_FAILED)
        await until(lambda: all(double.state(c) in done for c in (ping, status, read)), seconds=30)
        agent.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await agent.process.wait()
    assert [double.state(c) for c in (ping, status, read)] == [CommandState.COMMAND_STATE_SUCCEEDED] * 3
    assert set(double.result_dict(status)["inputs"]) == {
        "sim-imu",
        "sim-environment",
        "sim-system",
        "sim-generic",
    }
    assert agent.process.returncode == 0, "".join(agent.lines)


async def test_killed_while_a_command_runs_it_is_reported_failed_after_the_restart_and_not_run_again(
    command_service: CommandService, config: Path, tmp_path: Path
) -> None:
    double = command_service.servicer
    pid_file = tmp_path / "nap.pid"
    try:
        async with agent_process(config) as first:
            await until(lambda: double.connected, seconds=60)
            command_id = double.send("nap", {"seconds": 30}, result_timeout_s=60)
            await until(
                lambda: first.logged(f"event=command_running device_id={DEVICE_ID} command_id={command_id} ")
            )
            first.process.kill()  # SIGKILL mid-run: the journal says running
        assert double.state(command_id) == CommandState.COMMAND_STATE_DELIVERED
        async with agent_process(config) as second:
            await until(lambda: double.state(command_id) == CommandState.COMMAND_STATE_FAILED, seconds=60)
            double.offer(command_id)  # offered again: the stored failure, still no run
            await until(lambda: len(double.results[command_id]) >= 2)
        assert double.result(command_id).error_message == INTERRUPTED  # type: ignore[union-attr]
        assert not second.logged(f"event=command_running device_id={DEVICE_ID} command_id={command_id} ")
        assert second.logged(f"event=command_finished device_id={DEVICE_ID} command_id={command_id} ")
    finally:
        # SIGKILL leaves the program running (under systemd the unit's cgroup goes with the agent).
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
