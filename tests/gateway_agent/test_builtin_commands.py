"""The built-in commands on a whole agent (inputs, SQLite buffer, uplink, command link) against the
ingest and command doubles on one port: what each does, and what survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sensormesh.v1.command_pb2 import CommandState

from gateway_agent.agent import Agent
from gateway_agent.commands.builtins import BUILTIN_NAMES, builtin_handlers
from gateway_agent.commands.control import InputView
from gateway_agent.config import AgentSettings
from gateway_agent.inputs.base import Emit, Input
from gateway_agent.inputs.simulated import Settings as SimulatedSettings
from gateway_agent.inputs.simulated import Simulated
from gateway_agent.uplink import UplinkState
from sensormesh_core import __version__
from sensormesh_core.telemetry import configure_telemetry
from tests.gateway_agent.conftest import DEVICE_ID, TOKEN, CommandService
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(60)
EXAMPLE = Path(__file__).resolve().parents[2] / "gateway_agent" / "agent.example.toml"
SUCCEEDED, FAILED = CommandState.COMMAND_STATE_SUCCEEDED, CommandState.COMMAND_STATE_FAILED


class Stream:
    """A streaming input that connects and then waits for readings that never come."""

    name = "stream"

    async def stream(self, emit: Emit) -> None:
        emit([])
        await asyncio.Event().wait()


def sensor(name: str, seconds: float) -> Simulated:
    return Simulated(SimulatedSettings(kind="generic", sensor=name, interval=timedelta(seconds=seconds)))


def standard_inputs(slow_seconds: float = 3600) -> list[Input]:
    """fast (every 20 ms), other (every 20 ms), slow (hourly: read once at start) and a stream."""
    return [sensor("fast", 0.02), sensor("other", 0.02), sensor("slow", slow_seconds), Stream()]


class Running:
    """Agents on one buffer file, started and stopped in order, as a gateway restarts."""

    def __init__(self, service: CommandService, folder: Path) -> None:
        self.service = service
        self.folder = folder
        self.agent: Agent | None = None
        self._task: asyncio.Task[None] | None = None

    def settings(self, batch_max_age: str, **overrides: Any) -> AgentSettings:
        return AgentSettings.validate(dict(
            device_id=DEVICE_ID,
            token=TOKEN,
            uplink={
                "target": self.service.target, "tls": False, "batch_max_age": batch_max_age,
                "stream_max_duration": "60s", "stream_max_batches": 4, "backoff_initial": "20ms", "backoff_max": "200ms",
            },
            buffer={"path": str(self.folder / "buffer.sqlite3"), "commit_interval": "20ms"},
            stop_timeout="5s",
            **overrides,
        ))  # fmt: skip

    async def start(
        self, inputs: Sequence[Input] | None = None, batch_max_age: str = "50ms", **overrides: Any
    ) -> Agent:
        settings = self.settings(batch_max_age, **overrides)
        telemetry = configure_telemetry("agent-test", set_global=False)
        self.agent = await Agent.start(settings, telemetry, standard_inputs() if inputs is None else inputs)
        self._task = asyncio.create_task(self.agent.run())
        if self.agent.commands is not None:
            await until(
                lambda: (
                    self.agent is not None
                    and self.agent.commands is not None
                    and self.agent.commands.opened.is_set()
                )
            )
        return self.agent

    async def stop(self) -> None:
        if self.agent is None or self._task is None:
            return
        assert not self._task.done(), "the agent stopped by itself"
        self.agent.request_stop()
        async with asyncio.timeout(30):
            await self._task
        self.agent = self._task = None

    async def command(
        self, name: str, parameters: dict[str, Any] | None = None
    ) -> tuple[CommandState, dict[str, Any], str]:
        """Send a command and wait for its end: (state, result, error)."""
        double = self.service.servicer
        command_id = double.send(name, parameters or {}, result_timeout_s=20)
        await until(lambda: double.state(command_id) in (SUCCEEDED, FAILED))
        result = double.result(command_id)
        assert result is not None
        return double.state(command_id), double.result_dict(command_id), result.error_message


@pytest.fixture
async def agents(command_service: CommandService, tmp_path: Path) -> AsyncIterator[Running]:
    running = Running(command_service, tmp_path)
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            await running.stop()


def stored(service: CommandService, sensor_name: str) -> int:
    """Readings of `sensor_name` the ingest double has stored."""
    return sum(1 for reading in service.ingest.stored.values() if reading.sensor == sensor_name)


def runtime(agent: Agent, name: str) -> tuple[bool, float | None]:
    [found] = [i for i in agent.scheduler.runtime() if i.name == name]
    return found.enabled, found.interval_seconds


async def test_every_built_in_is_advertised_with_the_inputs_as_allowed_values(agents: Running) -> None:
    await agents.start()
    hello = agents.service.servicer.hellos[-1]
    specs = {spec.name: spec for spec in hello.commands}
    assert list(specs) == list(BUILTIN_NAMES)
    assert list(specs["read_now"].parameters[0].allowed_values) == ["fast", "other", "slow", "stream"]
    assert list(specs["set_interval"].parameters[0].allowed_values) == ["fast", "other", "slow"]
    seconds = specs["set_interval"].parameters[1]
    assert (seconds.name, seconds.minimum, seconds.maximum, seconds.required) == (
        "seconds",
        0.001,
        86400,
        True,
    )
    state, result, _ = await agents.command("ping")
    assert state == SUCCEEDED and result["agent_time"].endswith("Z")


async def test_set_interval_applies_at_once_and_is_kept_across_a_restart(agents: Running) -> None:
    agent = await agents.start()
    service = agents.service
    await until(lambda: stored(service, "slow") == 1)  # read once at start; the next in an hour
    state, result, _ = await agents.command("set_interval", {"input": "slow", "seconds": 0.05})
    assert state == SUCCEEDED
    assert result == {"input": "slow", "interval_seconds": 0.05, "previous_seconds": 3600}
    await until(lambda: stored(service, "slow") >= 5)
    await agents.stop()

    agent = await agents.start()
    assert runtime(agent, "slow") == (True, 0.05)
    await agents.stop()

    # agent.toml now says something else for this input: the newer word wins, the override goes.
    agent = await agents.start([sensor("fast", 0.02), sensor("other", 0.02), sensor("slow", 7200)])
    assert runtime(agent, "slow") == (True, 7200)
    await agents.stop()
    agent = await agents.start([sensor("fast", 0.02), sensor("other", 0.02), sensor("slow", 3600)])
    assert runtime(agent, "slow") == (True, 3600)


async def test_disable_and_enable_an_input_and_the_choice_survives_a_restart(agents: Running) -> None:
    agent = await agents.start()
    service = agents.service
    await until(lambda: stored(service, "fast") >= 3)
    state, result, _ = await agents.command("disable_input", {"input": "fast"})
    assert state == SUCCEEDED and result == {"input": "fast", "enabled": False}
    await agents.command("flush")
    frozen, other = stored(service, "fast"), stored(service, "other")
    await until(lambda: stored(service, "other") >= other + 10)
    assert stored(service, "fast") == frozen
    assert runtime(agent, "fast") == (False, 0.02)
    await agents.stop()

    agent = await agents.start()
    assert runtime(agent, "fast") == (False, 0.02)
    other = stored(service, "other")
    await until(lambda: stored(service, "other") >= other + 10)
    assert stored(service, "fast") == frozen
    state, result, _ = await agents.command("enable_input", {"input": "fast"})
    assert state == SUCCEEDED and result == {"input": "fast", "enabled": True}
    await until(lambda: stored(service, "fast") >= frozen + 5)
    await agents.stop()
    agent = await agents.start()
    assert runtime(agent, "fast") == (True, 0.02)


async def test_read_now_reads_once_and_uploads_without_waiting_for_the_batch(agents: Running) -> None:
    agent = await agents.start(batch_max_age="30s")  # nothing would go out for 30 s
    await until(lambda: agent.uplink.state is UplinkState.UPLOADING)
    state, result, _ = await agents.command("read_now", {"input": "slow"})
    assert state == SUCCEEDED and result == {"input": "slow", "readings": 1}
    async with asyncio.timeout(10):  # well before batch_max_age
        await until(lambda: stored(agents.service, "slow") == 2)  # the start's reading and this one
    state, _, error = await agents.command("read_now", {"input": "stream"})
    assert state == FAILED and error == (
        "stream is a streaming input: it delivers readings as its source sends them, and cannot be read on demand"
    )
    await agents.command("disable_input", {"input": "slow"})
    state, _, error = await agents.command("read_now", {"input": "slow"})
    assert state == FAILED and error == "slow is disabled; enable_input it first"


async def test_flush_uploads_the_backlog_now_and_answers_with_what_is_left(agents: Running) -> None:
    slow_ones: list[Input] = [sensor(f"s{i}", 3600) for i in range(20)]  # 20 readings at start, then quiet
    agent = await agents.start(slow_ones, batch_max_age="30s")
    await until(lambda: agent.uplink.state is UplinkState.UPLOADING)
    await until(lambda: agent.buffer.bound and agent.buffer.last_sequence >= 20)
    assert agents.service.ingest.committed == 0  # waiting for the batch to fill or age
    state, result, _ = await agents.command("flush")
    assert state == SUCCEEDED and result == {"pending": 0}
    assert agents.service.ingest.committed == 20


async def test_status_reports_the_buffer_uplink_inputs_and_host(agents: Running) -> None:
    agent = await agents.start()
    await until(lambda: (agent.uplink.committed or 0) > 0)
    await agents.command("disable_input", {"input": "other"})
    state, status, _ = await agents.command("status")
    assert state == SUCCEEDED
    assert status["agent_version"] == __version__
    assert status["hostname"] == socket.gethostname()
    assert status["python_version"].count(".") == 2
    assert 0 < status["uptime_seconds"] < 60
    assert set(status["buffer"]) == {"pending", "used_bytes", "thinned_total", "last_sequence"}
    assert status["buffer"]["used_bytes"] > 0 and status["buffer"]["last_sequence"] > 0
    assert status["uplink"]["state"] == "uploading" and status["uplink"]["committed_sequence"] > 0
    inputs = status["inputs"]
    assert inputs["fast"] == {
        "polled": True, "enabled": True, "interval_seconds": 0.02, "ok": True, "error_count": 0, "last_error": "",
    }  # fmt: skip
    assert inputs["other"]["enabled"] is False
    assert inputs["stream"]["polled"] is False and inputs["stream"]["interval_seconds"] is None


async def test_with_commands_disabled_the_agent_opens_no_channel(agents: Running) -> None:
    agent = await agents.start(commands={"enabled": False})
    await until(lambda: (agent.uplink.committed or 0) > 0)
    assert agent.commands is None
    assert agents.service.servicer.hellos == []


class ManyInputs:
    """AgentControl with 70 polled inputs, more than a parameter's allowed values may list."""

    def inputs(self) -> list[InputView]:
        return [InputView(f"in{i}", True, True, 1.0, None, 0, "") for i in range(70)]


def test_with_more_inputs_than_allowed_values_may_list_the_hello_leaves_the_list_out() -> None:
    specs = {h.spec.name: h.spec for h in builtin_handlers(ManyInputs())}  # type: ignore[arg-type]
    assert list(specs["read_now"].parameters[0].allowed_values) == []
    assert list(specs["set_interval"].parameters[0].allowed_values) == []


async def test_the_hello_of_a_fully_configured_agent_passes_the_contracts_validation(agents: Running) -> None:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory
    from sensormesh.v1 import command_delivery_pb2 as delivery

    from sensormesh_core.validation import violations

    example = AgentSettings.load(EXAMPLE)
    Device.pin_factory = MockFactory()
    try:
        agent = await agents.start(commands=msgspec.to_builtins(example.commands))
        assert agent.commands is not None
        hello = agent.commands.hello()
        await agents.stop()
    finally:
        Device.pin_factory.close()
        Device.pin_factory = None
    assert [s.name for s in hello.hello.commands][-3:] == ["relay", "pump-plug", "set_output"]
    assert violations(hello) == []
    assert violations(delivery.ConnectCommandsRequest(receipt=delivery.CommandReceipt(command_id=1))) == []
