"""What every command handler is: a spec the agent advertises and a coroutine that runs it.

A handler answers one command name. Its `spec` (a `CommandSpec`: name,
description, typed parameters) is sent in the command channel's hello, so the
control service refuses unknown commands and misfitting parameters at once;
the agent checks the parameters against the same spec again before it runs
the handler (sensormesh_core.command_parameters), so `run` only ever sees
parameters that fit.

`run` returns the result as JSON values (what `google.protobuf.Struct`
carries) or raises: `CommandFailed` for a failure the handler understands (its
message is what the operator reads), anything else for one it does not (the
link reports its message too). The link bounds each run by the command's
`result_timeout` and cancels the handler when it overruns, so a handler must
let cancellation through and clean up after itself (kill its process, release
its pin).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Protocol, runtime_checkable

from sensormesh.v1.command_delivery_pb2 import CommandSpec

NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
"""A command's name, as the contract (CommandSpec.name) allows it: 1-64 characters."""
NAME_MAX_LENGTH = 64
PARAMETER_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
"""A parameter's name, as the contract (CommandParameter.name) allows it."""
MAX_COMMANDS = 256
"""The most commands a hello may advertise (CommandChannelHello.commands)."""
MAX_PARAMETERS = 32
"""The most parameters a command may declare (CommandSpec.parameters)."""


class CommandFailed(Exception):
    """A handled failure: `message` says what went wrong; `result` keeps what the run produced
    (a program's exit code and output), reported with the failure."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result or {}


@runtime_checkable
class CommandHandler(Protocol):
    """Runs one command."""

    @property
    def spec(self) -> CommandSpec:
        """What the agent advertises for this command."""

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Run with checked `parameters`; return the result (JSON values) or raise CommandFailed."""


@runtime_checkable
class ManagedHandler(Protocol):
    """A handler that holds a resource for the agent's lifetime (a GPIO pin): the agent opens it
    at start and closes it at stop."""

    async def open(self) -> None:
        """Take the resource; must not raise for a resource that is missing (report it on run)."""

    async def close(self) -> None:
        """Release the resource."""


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("command_deadline", default=None)


def set_deadline(loop_time: float) -> contextvars.Token[float | None]:
    """Called by the link around a run: the event-loop time by which the handler must return."""
    return _deadline.set(loop_time)


def reset_deadline(token: contextvars.Token[float | None]) -> None:
    _deadline.reset(token)


def time_left(default: float) -> float:
    """Seconds the running command has left before the link cancels it (`default` outside a run).

    A handler that waits for something optional (an upload's acknowledgement) waits at most
    this long, less a margin, so it can still answer with what it has."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(0.0, deadline - asyncio.get_running_loop().time())
