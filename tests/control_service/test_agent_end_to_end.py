"""The real agent against the real ingest and control services: a command runs at most once, and
ends in the right state, whichever moment the agent is killed with SIGKILL.

The command under test is a program that appends a line to a file each time it starts, so the
file counts its runs. Each case stops the exchange at one point and kills the agent there:

- before its receipt is answered (the test holds the command's row locked, so the service cannot
  confirm the receipt until the agent is dead): it runs once after the restart;
- while it runs (after DELIVERED): it is reported FAILED after the restart, never run again;
- after its result is in the agent's journal but before the service has it (the ingest service is
  stopped while the command runs): the stored result is reported after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import pytest
from sensormesh.v1 import command_pb2, command_pb2_grpc

from control_service.server import ControlServer
from ingest_service.server import IngestServer, start
from sensormesh_cli.bearer import aio_interceptors
from tests.control_service.commands_api import get, send
from tests.control_service.conftest import Device, ingest_settings
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.timeout(180)]

S = command_pb2
ROOT = Path(__file__).resolve().parents[2]
COUNT_RUNS = "import sys, time; open(sys.argv[1], 'a').write('ran' + chr(10)); time.sleep(float(sys.argv[2]))"
CONFIG = """
device_id = "{device_id}"
stop_timeout = "2s"

[uplink]
  target = "127.0.0.1:{port}"
  tls = false
  batch_max_age = "200ms"
  backoff_initial = "50ms"
  backoff_max = "300ms"

[buffer]
  path = '{buffer}'
  commit_interval = "50ms"

[[inputs.simulated]]
  kind = "environment"
  interval = "1s"

[[commands.program]]
  name = "count"
  description = "Counts its runs in a file, then sleeps."
  argv = ['{python}', "-c", "{script}", '{marker}', "{{seconds}}"]
  timeout = "60s"
  [[commands.program.parameters]]
    name = "seconds"
    type = "number"
    required = true
    maximum = 30
"""


@dataclass
class Agent:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@dataclass
class Rig:
    device: Device
    port: int
    config: Path
    marker: Path
    stub: command_pb2_grpc.CommandServiceStub
    database_url: str

    def runs(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    @contextlib.asynccontextmanager
    async def agent(self) -> AsyncIterator[Agent]:
        env = {**os.environ, "SENSORMESH_AGENT_TOKEN": self.device.token}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensormesh_cli", "agent", "--config", str(self.config),
            cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        agent = Agent(process)

        async def read() -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                agent.lines.append(line.decode())

        reader = asyncio.create_task(read())
        try:
            yield agent
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await reader
            # Kept beside the test's files: what the agent said, when an assertion fails.
            with (self.config.parent / "agent.log").open("a") as log:
                log.writelines(agent.lines)

    async def state(self, command_id: int) -> int:
        return (await get(self.stub, self.device.device_id, command_id)).state

    async def until_state(self, command_id: int, state: int, within: float = 60) -> command_pb2.Command:
        async def reached() -> bool:
            return await self.state(command_id) == state

        await wait_until(reached, within, f"command {command_id} {S.CommandState.Name(state)}")
        return await get(self.stub, self.device.device_id, command_id)


async def until_logged(agent: Agent, text: str, within: float = 60) -> None:
    async def seen() -> bool:
        return agent.logged(text)

    await wait_until(seen, within, f"the agent logged {text!r}")


async def ingest_on(database_url: str, port: int) -> IngestServer:
    return await start(ingest_settings(database_url, ingest_listen=f"127.0.0.1:{port}"))


@pytest.fixture
async def rig(
    database_url: str, device: Device, control: ControlServer, operator_key: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    port = free_port()
    marker = tmp_path / "runs.txt"
    config = tmp_path / "agent.toml"
    config.write_text(
        CONFIG.format(
            device_id=device.device_id,
            port=port,
            buffer=tmp_path / "buffer.sqlite3",
            python=sys.executable,
            script=COUNT_RUNS,
            marker=marker,
        )
    )
    address = f"127.0.0.1:{control.port}"
    async with grpc.aio.insecure_channel(address, interceptors=aio_interceptors(operator_key)) as channel:
        yield Rig(device, port, config, marker, command_pb2_grpc.CommandServiceStub(channel), database_url)


async def connected(rig: Rig, agent: Agent) -> None:
    await until_logged(agent, f"event=command_channel_opened device_id={rig.device.device_id}")


async def test_queued_commands_reach_the_agent_on_reconnect_in_order_and_each_runs_once(rig: Rig) -> None:
    ingest = await ingest_on(rig.database_url, rig.port)
    try:
        async with rig.agent() as agent:
            await connected(rig, agent)
            agent.process.send_signal(signal.SIGTERM)
            assert await agent.process.wait() == 0
        sent = [await send(rig.stub, rig.device.device_id, "count", seconds=0) for _ in range(3)]
        ping = await send(rig.stub, rig.device.device_id, "ping")
        async with rig.agent():
            finished = [await rig.until_state(c.command_id, S.COMMAND_STATE_SUCCEEDED) for c in (*sent, ping)]
        assert rig.runs() == 3
        assert [c.finish_time.ToNanoseconds() for c in finished] == sorted(
            c.finish_time.ToNanoseconds() for c in finished
        )
        assert "agent_time" in dict(finished[-1].result)
    finally:
        await ingest.stop(grace=1)


async def test_killed_before_its_receipt_is_answered_the_command_runs_once_after_the_restart(
    rig: Rig,
) -> None:
    ingest = await ingest_on(rig.database_url, rig.port)
    conn = await asyncpg.connect(rig.database_url)
    try:
        # The service's answer to the receipt waits 5 s (a trigger on the DELIVERED update, in this
        # test's database only): the agent has recorded the command and is killed in between.
        await conn.execute(_SLOW_DELIVERY)
        async with rig.agent() as first:
            await connected(rig, first)
            sent = await send(rig.stub, rig.device.device_id, "count", seconds=0)
            received = (
                f"event=command_received device_id={rig.device.device_id} command_id={sent.command_id} "
            )
            await until_logged(first, received)
            first.process.kill()  # the receipt is on its way; the answer cannot come yet
            await first.process.wait()
        await conn.execute("DROP TRIGGER slow_delivery ON commands")
        assert rig.runs() == 0
        async with rig.agent():
            await rig.until_state(sent.command_id, S.COMMAND_STATE_SUCCEEDED)
        assert rig.runs() == 1
    finally:
        await conn.close()
        await ingest.stop(grace=1)


_SLOW_DELIVERY = """
CREATE FUNCTION slow_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$;
CREATE TRIGGER slow_delivery BEFORE UPDATE ON commands
FOR EACH ROW WHEN (OLD.state <> 3 AND NEW.state = 3) EXECUTE FUNCTION slow_delivery();
"""


async def test_killed_while_the_command_runs_it_is_failed_after_the_restart_and_never_run_again(
    rig: Rig,
) -> None:
    ingest = await ingest_on(rig.database_url, rig.port)
    try:
        async with rig.agent() as first:
            await connected(rig, first)
            sent = await send(rig.stub, rig.device.device_id, "count", seconds=5)
            await until_logged(
                first, f"event=command_running device_id={rig.device.device_id} command_id={sent.command_id} "
            )
            await wait_until(_async(lambda: rig.runs() == 1), 30, "the program started")
            first.process.kill()
        assert await rig.state(sent.command_id) == S.COMMAND_STATE_DELIVERED
        async with rig.agent():
            failed = await rig.until_state(sent.command_id, S.COMMAND_STATE_FAILED)
        assert "restarted while the command ran" in failed.error_message
        assert rig.runs() == 1
    finally:
        await ingest.stop(grace=1)


async def test_killed_after_its_result_is_journaled_but_not_reported_the_result_arrives_after_the_restart(
    rig: Rig,
) -> None:
    ingest = await ingest_on(rig.database_url, rig.port)
    async with rig.agent() as first:
        await connected(rig, first)
        sent = await send(rig.stub, rig.device.device_id, "count", seconds=2)
        await until_logged(
            first, f"event=command_running device_id={rig.device.device_id} command_id={sent.command_id} "
        )
        await ingest.stop(grace=0)  # the result has nowhere to go
        await until_logged(
            first, f"event=command_finished device_id={rig.device.device_id} command_id={sent.command_id} "
        )
        first.process.kill()
    assert await rig.state(sent.command_id) == S.COMMAND_STATE_DELIVERED
    ingest = await ingest_on(rig.database_url, rig.port)
    try:
        async with rig.agent():
            done = await rig.until_state(sent.command_id, S.COMMAND_STATE_SUCCEEDED)
        assert dict(done.result)["exit_code"] == 0
        assert rig.runs() == 1
    finally:
        await ingest.stop(grace=1)


def _async(condition: object) -> object:
    async def check() -> bool:
        return bool(condition())  # type: ignore[operator]

    return check
