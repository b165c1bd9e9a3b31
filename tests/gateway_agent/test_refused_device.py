"""A device disabled, deleted or given a new token while its agent runs: the whole agent (simulated
sensor, SQLite buffer, uplink) against the real ingest service on a real PostgreSQL.

The agent must stay up, keep sampling into its buffer, say once what the server answered and what
to do, retry slowly, and deliver every reading exactly once when the device is allowed again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from gateway_agent.agent import Agent
from gateway_agent.config import AgentSettings
from gateway_agent.inputs import simulated
from gateway_agent.uplink import UplinkState
from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.storage.registry import (
    DEVICE_STATUS_ACTIVE,
    DEVICE_STATUS_DISABLED,
    DeviceChanges,
    create_device,
    delete_device,
    rotate_token,
    update_device,
)
from sensormesh_core.telemetry import configure_telemetry
from sensormesh_core.tokens import write_token_file
from tests.gateway_agent.support import until
from tests.ingest_service.readings import stored

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]

DEVICE = "refused-pi"


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[IngestServer]:
    settings = IngestSettings(
        database_url=SecretStr(database_url),
        ingest_listen="127.0.0.1:0",
        credential_cache_ttl=timedelta(milliseconds=100),  # the refusal is seen at once
        pool_min_size=1,
        pool_max_size=4,
    )
    running = await start(settings, telemetry=configure_telemetry("ingest-test", set_global=False))
    try:
        yield running
    finally:
        await running.stop(grace=5)


@pytest.fixture
async def agent(server: IngestServer, db: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[Agent]:
    """An agent running as `DEVICE` with its token in a file, sampling 100 readings a second."""
    _, token = await create_device(db, DEVICE)
    token_file = tmp_path / "device-token"
    write_token_file(token_file, token)
    settings = AgentSettings.validate(dict(
        device_id=DEVICE,
        token_file=token_file,
        uplink={
            "target": f"127.0.0.1:{server.port}", "tls": False,
            "batch_max_age": "50ms", "stream_max_duration": "500ms",
            "backoff_initial": "20ms", "backoff_max": "200ms",
            "refused_backoff_initial": "100ms", "refused_backoff_max": "300ms",
        },
        buffer={"path": str(tmp_path / "buffer.sqlite3"), "commit_interval": "20ms"},
    ))  # fmt: skip
    sensor = simulated.Simulated(simulated.Settings(kind="generic", interval=timedelta(milliseconds=10)))
    running = await Agent.start(settings, configure_telemetry("agent-test", set_global=False), [sensor])
    task = asyncio.create_task(running.run(), name="agent")
    tasks[id(running)] = task
    try:
        await until(lambda: (running.uplink.committed or 0) >= 50)
        yield running
        assert not task.done() or task.exception() is None, "the agent failed"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


tasks: dict[int, asyncio.Task[None]] = {}  # id(agent) -> its run()


async def stop(agent: Agent) -> None:
    """Stop the agent in order (what SIGTERM does); it must still have been running."""
    task = tasks.pop(id(agent))
    assert not task.done(), "the agent stopped by itself"
    agent.request_stop()
    await asyncio.wait_for(task, 30)


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"event={event} ")]


def refusals_answered(caplog: pytest.LogCaptureFixture) -> int:
    """Calls the ingest service refused (its own log line per call): the agent's retries."""
    return len(events(caplog, "rpc_refused"))


async def pending(agent: Agent) -> int:
    return (await agent.buffer.stats()).pending


async def stays_refused_and_buffers(agent: Agent, caplog: pytest.LogCaptureFixture, retries: int = 4) -> None:
    """Through several more retries the agent keeps its state, keeps sampling and logs nothing new."""
    before, buffered, lines = refusals_answered(caplog), await pending(agent), len(caplog.records)
    await until(lambda: refusals_answered(caplog) >= before + retries)
    assert agent.uplink.state is UplinkState.REFUSED
    assert await pending(agent) > buffered
    # The command channel is refused too, once, whenever its open stream is next checked (within
    # about 10 s of the change): that one line may fall in this window; a line per retry may not.
    agent_lines = [
        r
        for r in caplog.records[lines:]
        if r.name.startswith("gateway_agent")
        and r.levelno >= logging.INFO
        and not r.getMessage().startswith("event=command_channel_refused ")
    ]
    assert agent_lines == [], "a line per retry"
    assert len(events(caplog, "command_channel_refused")) <= 3  # one per refusal the test makes, at most


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


async def test_a_disabled_device_keeps_buffering_and_delivers_everything_once_when_enabled_again(
    agent: Agent, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await update_device(db, DEVICE, DeviceChanges(status=DEVICE_STATUS_DISABLED))
    await until(lambda: agent.uplink.state is UplinkState.REFUSED)
    await stays_refused_and_buffers(agent, caplog)

    (line,) = events(caplog, "upload_refused")
    assert "code=PERMISSION_DENIED" in line and f"\"device '{DEVICE}' is disabled\"" in line
    assert f"sensormesh devices update {DEVICE} --status active" in line
    committed_while_refused = agent.uplink.committed

    await update_device(db, DEVICE, DeviceChanges(status=DEVICE_STATUS_ACTIVE))
    await until(lambda: agent.uplink.state is UplinkState.UPLOADING)
    await until(lambda: (agent.uplink.committed or 0) > (committed_while_refused or 0) + 200)
    (allowed,) = events(caplog, "upload_allowed")
    assert "was=PERMISSION_DENIED" in allowed
    await assert_everything_stored_once_after_stop(agent, db)


async def test_a_deleted_device_keeps_its_buffer_and_keeps_running(
    agent: Agent, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    taken = agent.buffer.last_sequence
    await delete_device(db, DEVICE)
    await until(
        lambda: agent.uplink.refusal is not None and agent.uplink.refusal.code.name == "UNAUTHENTICATED"
    )
    await stays_refused_and_buffers(agent, caplog)
    line = events(caplog, "upload_refused")[-1]
    assert "unknown device token" in line and "device-token" in line  # where to put a new one
    await until(lambda: agent.buffer.last_sequence > taken + 100)  # still sampling
    await stop(agent)


async def test_a_rotated_token_written_to_the_token_file_is_picked_up_without_a_restart(
    agent: Agent, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    token = await rotate_token(db, DEVICE)
    await until(lambda: agent.uplink.state is UplinkState.REFUSED)
    assert "code=UNAUTHENTICATED" in events(caplog, "upload_refused")[0]
    await stays_refused_and_buffers(agent, caplog)

    assert agent.settings.token_file is not None
    write_token_file(agent.settings.token_file, token)
    await until(lambda: agent.uplink.state is UplinkState.UPLOADING)
    assert len(events(caplog, "token_reloaded")) == 1
    await assert_everything_stored_once_after_stop(agent, db)


async def assert_everything_stored_once_after_stop(agent: Agent, db: asyncpg.Connection) -> None:
    """Stop the agent in order, then: every reading it took is stored, each once, none left over."""
    await stop(agent)
    taken = agent.buffer.last_sequence
    assert agent.uplink.committed == taken  # the last stream was acknowledged: nothing left buffered
    assert (await stored(db, DEVICE)).sequences == list(range(1, taken + 1))
