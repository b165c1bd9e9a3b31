"""The built-in commands every agent answers, whatever agent.toml declares.

    ping           {}                                   -> {"agent_time": RFC 3339 now}
    read_now       {"input": <any input>}               -> {"input", "readings": n} (uploaded at once)
    set_interval   {"input": <polled input>, "seconds"} -> {"input", "interval_seconds", "previous_seconds"}
    enable_input   {"input": <any input>}               -> {"input", "enabled": true}
    disable_input  {"input": <any input>}               -> {"input", "enabled": false}
    flush          {}                                   -> {"pending": readings still buffered}
    status         {}                                   -> buffer, uplink, inputs, versions, uptime, host

`set_interval`, `enable_input` and `disable_input` are kept across restarts
(gateway_agent/commands/input_overrides.py). Input parameters list the
configured inputs as their allowed values, so the control service refuses a
misspelt input before the command is stored.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import CommandHandler, time_left
from gateway_agent.commands.control import AgentControl

BUILTIN_NAMES = (
    "ping",
    "read_now",
    "set_interval",
    "enable_input",
    "disable_input",
    "flush",
    "status",
)
RESERVED_NAMES = (*BUILTIN_NAMES, "capture")
"""The built-ins and the camera inputs' `capture` (gateway_agent/commands/capture.py)."""
FLUSH_WAIT_S = 10.0
"""Longest wait for the acknowledgement of a flush (less when the command's timeout is shorter)."""
MARGIN_S = 0.5
"""Time kept back from a command's timeout to answer with what there is."""


MAX_ALLOWED_VALUES = 64
"""CommandParameter.allowed_values' limit; with more inputs any name is let through and the agent
refuses unknown ones itself (a hello over the limit would be refused whole)."""


def _input_parameter(names: list[str], description: str) -> delivery.CommandParameter:
    return delivery.CommandParameter(
        name="input",
        description=description,
        type=delivery.COMMAND_PARAMETER_TYPE_STRING,
        required=True,
        allowed_values=names if len(names) <= MAX_ALLOWED_VALUES else [],
    )


class Ping:
    """Answers at once: the round trip and the device's clock."""

    spec = delivery.CommandSpec(
        name="ping", description="Answer at once with the agent's clock (RFC 3339, UTC)."
    )

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {"agent_time": now}


class ReadNow:
    """One reading from a polled input now, uploaded at once."""

    def __init__(self, control: AgentControl) -> None:
        self._control = control
        names = [i.name for i in control.inputs()]
        self.spec = delivery.CommandSpec(
            name="read_now",
            description="Read a polled input once now and upload the reading at once.",
            parameters=[_input_parameter(names, "The input to read (a polled one: streaming inputs push).")],
        )

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name = parameters["input"]
        count = await self._control.read_now(name)
        await self._control.flush(wait_s=0)
        return {"input": name, "readings": count}


class SetInterval:
    """A polled input's interval, from now on and after restarts."""

    def __init__(self, control: AgentControl) -> None:
        self._control = control
        names = [i.name for i in control.inputs() if i.polled]
        seconds = delivery.CommandParameter(
            name="seconds",
            description="The new interval between reads, in seconds.",
            type=delivery.COMMAND_PARAMETER_TYPE_NUMBER,
            required=True,
            minimum=0.001,
            maximum=86400,
        )
        self.spec = delivery.CommandSpec(
            name="set_interval",
            description="Change a polled input's interval between reads; kept across restarts.",
            parameters=[_input_parameter(names, "The polled input."), seconds],
        )

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name, seconds = parameters["input"], float(parameters["seconds"])
        previous = await self._control.set_interval(name, seconds)
        return {"input": name, "interval_seconds": seconds, "previous_seconds": previous}


class SetEnabled:
    """`enable_input` or `disable_input`: start or stop an input, from now on and after restarts."""

    def __init__(self, control: AgentControl, enabled: bool) -> None:
        self._control = control
        self._enabled = enabled
        names = [i.name for i in control.inputs()]
        verb = "Start" if enabled else "Stop"
        self.spec = delivery.CommandSpec(
            name="enable_input" if enabled else "disable_input",
            description=f"{verb} an input; kept across restarts.",
            parameters=[_input_parameter(names, "The input.")],
        )

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name = parameters["input"]
        await self._control.set_enabled(name, self._enabled)
        return {"input": name, "enabled": self._enabled}


class Flush:
    """Upload the backlog now instead of at the next batch."""

    spec = delivery.CommandSpec(
        name="flush",
        description="Commit the buffer and upload the backlog now; answers with the readings still buffered.",
    )

    def __init__(self, control: AgentControl) -> None:
        self._control = control

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        wait_s = min(FLUSH_WAIT_S, max(0.0, time_left(FLUSH_WAIT_S) - MARGIN_S))
        return {"pending": await self._control.flush(wait_s=wait_s)}


class Status:
    """How the agent is doing."""

    spec = delivery.CommandSpec(
        name="status",
        description="The buffer's depth and thinning, the uplink, every input, versions, uptime and host.",
    )

    def __init__(self, control: AgentControl) -> None:
        self._control = control

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        s = await self._control.status()
        return {
            "agent_version": s.agent_version,
            "python_version": s.python_version,
            "hostname": s.hostname,
            "uptime_seconds": round(s.uptime_seconds, 3),
            "buffer": {
                "pending": s.buffer_pending,
                "used_bytes": s.buffer_used_bytes,
                "thinned_total": s.buffer_thinned_total,
                "last_sequence": s.buffer_last_sequence,
            },
            "uplink": {"state": s.uplink_state, "committed_sequence": s.uplink_committed_sequence},
            "inputs": {
                i.name: {k: v for k, v in dataclasses.asdict(i).items() if k != "name"} for i in s.inputs
            },
        }


def builtin_handlers(control: AgentControl) -> list[CommandHandler]:
    """Every built-in, in BUILTIN_NAMES order."""
    return [
        Ping(),
        ReadNow(control),
        SetInterval(control),
        SetEnabled(control, enabled=True),
        SetEnabled(control, enabled=False),
        Flush(control),
        Status(control),
    ]
