"""Running one command: check its parameters, bound its time, and turn whatever happens into an Outcome.

The link (link.py) decides WHETHER a command runs (the journal's at-most-once
rules); this module decides what its run comes to, so every way a handler can
end is reported the same way:

- parameters that do not fit the handler's spec -> FAILED naming each field
  (sensormesh_core.command_parameters.check: the control service's own check,
  repeated because the agent must not trust the wire);
- the handler overruns the command's result timeout -> cancelled, FAILED
  "timed out after N s on the device";
- `CommandFailed` -> FAILED with its message and result;
- any other exception -> FAILED with the exception's message, logged once
  with its traceback (a handler bug, not an operator's mistake);
- a result that is not JSON, or over the contract's 64 KiB -> FAILED saying so.

Each run is a span ("command run") with the command's id and name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry import trace
from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import CommandFailed, CommandHandler, reset_deadline, set_deadline
from gateway_agent.commands.journal import Outcome
from sensormesh_core.command_parameters import as_struct, check

log = logging.getLogger(__name__)

RESULT_MAX_BYTES = 64 * 1024
"""CommandResult.result's limit, encoded."""
ERROR_MAX_CHARS = 4096
"""CommandResult.error_message's limit."""


async def run_command(
    handler: CommandHandler | None,
    command_id: int,
    name: str,
    parameters: dict[str, Any],
    timeout_s: float,
    tracer: trace.Tracer,
) -> Outcome:
    """Run `handler` with `parameters` within `timeout_s`; never raises but for cancellation."""
    attributes: dict[str, str | int] = {"sensormesh.command_id": command_id, "sensormesh.command_name": name}
    with tracer.start_as_current_span("command run", attributes=attributes) as span:
        outcome = await _run(handler, command_id, name, parameters, timeout_s)
        outcome = _fit_for_the_wire(outcome)
        span.set_attribute("sensormesh.command_succeeded", outcome.succeeded)
        if not outcome.succeeded:
            span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.error[:256]))
        return outcome


async def _run(
    handler: CommandHandler | None, command_id: int, name: str, parameters: dict[str, Any], timeout_s: float
) -> Outcome:
    if handler is None:
        return Outcome(False, error=f"this agent has no command named {name!r} (its configuration changed?)")
    declared = list(handler.spec.parameters)
    violations = check(declared, parameters)
    if violations:
        problems = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return Outcome(False, error=f"invalid parameters: {problems}")
    loop = asyncio.get_running_loop()
    token = set_deadline(loop.time() + timeout_s)
    timer = asyncio.timeout(timeout_s)
    try:
        async with timer:
            result = await handler.run(_typed(declared, parameters))
    except TimeoutError as error:
        if not timer.expired():
            return _unexpected(command_id, name, error)  # the handler's own TimeoutError
        return Outcome(False, error=f"timed out after {timeout_s:g} s on the device")
    except CommandFailed as failure:
        return Outcome(False, failure.result, failure.message)
    except Exception as error:  # a handler's bug: reported to the operator and logged, never fatal
        return _unexpected(command_id, name, error)
    finally:
        reset_deadline(token)
    if not isinstance(result, dict):
        return Outcome(False, error=f"the handler answered {type(result).__name__}, not a JSON object")
    return Outcome(True, result)


def _unexpected(command_id: int, name: str, error: BaseException) -> Outcome:
    message = str(error) or type(error).__name__
    log.warning(
        "event=command_handler_error command_id=%d name=%s error_type=%s error=%r",
        command_id, name, type(error).__name__, message, exc_info=error,
    )  # fmt: skip
    return Outcome(False, error=f"{type(error).__name__}: {message}")


def _typed(declared: list[delivery.CommandParameter], parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters with INTEGER ones as int: a Struct carries every number as a double."""
    integers = {p.name for p in declared if p.type == delivery.COMMAND_PARAMETER_TYPE_INTEGER}
    return {k: int(v) if k in integers else v for k, v in parameters.items()}


def _fit_for_the_wire(outcome: Outcome) -> Outcome:
    """The outcome as the contract can carry it: a JSON result of at most 64 KiB, an error of at
    most 4,096 characters; anything else becomes a failure saying what was wrong."""
    result, error, succeeded = outcome.result, outcome.error, outcome.succeeded
    try:
        size = as_struct(result).ByteSize()
    except (TypeError, ValueError) as problem:
        result, succeeded = {}, False
        error = f"{error + '; ' if error else ''}the result is not JSON: {problem}"
    else:
        if size > RESULT_MAX_BYTES:
            result, succeeded = {}, False
            error = f"{error + '; ' if error else ''}the result is {size} bytes, over the 64 KiB limit"
    if len(error) > ERROR_MAX_CHARS:
        error = error[: ERROR_MAX_CHARS - 12] + " …[cut]"
    return Outcome(succeeded, result, error, outcome.finish_time_ns)
