"""SendCommand's rules: a command the device understands, with parameters that fit, stored once.

Everything that can be refused is refused before the command is stored, so a
command in the table is one its device advertised: the device must exist and
be visible to the caller, be active, have opened its command channel at least
once (that is when it advertises its commands), and understand the command;
the parameters must fit the device's declaration and the size limit; the
expiry must lie within 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from sensormesh.v1 import command_delivery_pb2, command_pb2

from control_service.settings import ControlSettings
from sensormesh_core import command_parameters
from sensormesh_core.access.principal import Principal
from sensormesh_core.command_telemetry import current_trace_context
from sensormesh_core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from sensormesh_core.storage import command_offers, commands, registry
from sensormesh_core.storage.commands import CommandRecord, NewCommand

MAX_EXPIRY = timedelta(days=30)


async def send_command(
    conn: asyncpg.Connection,
    request: command_pb2.SendCommandRequest,
    caller: Principal,
    settings: ControlSettings,
) -> tuple[CommandRecord, bool]:
    """Check `request` (already validated against the contract) and store its command QUEUED;
    returns it and whether this call made it (False: a repeated request_id)."""
    await registry.require_visible(conn, request.device_id, caller.scope)
    device = await registry.get_device(conn, request.device_id)
    if device.status != registry.DEVICE_STATUS_ACTIVE:
        raise FailedPrecondition(
            f"device {request.device_id!r} is disabled: it cannot receive commands until it is enabled",
            reason="DEVICE_DISABLED",
        )
    specs = await command_offers.advertised(conn, request.device_id)
    if not specs:
        raise FailedPrecondition(
            f"device {request.device_id!r} has advertised no commands: its agent has never opened the "
            "command channel (a device that writes over REST cannot receive commands)",
            reason="COMMANDS_NOT_ADVERTISED",
        )
    spec = specs.get(request.name)
    if spec is None:
        raise InvalidArgument(
            f"device {request.device_id!r} does not advertise the command {request.name!r}",
            [
                FieldViolation(
                    "name", f"not a command of this device; it advertises {', '.join(sorted(specs))}"
                )
            ],
        )
    parameters = _parameters(request, spec)
    now = datetime.now(UTC)
    return await commands.insert(
        conn,
        NewCommand(
            device_id=request.device_id,
            name=request.name,
            parameters=parameters,
            creator=caller.actor,
            request_id=request.request_id,
            expire_time=_expire_time(request, now, settings.command_default_ttl),
            result_timeout=(
                request.result_timeout.ToTimedelta()
                if request.HasField("result_timeout") and request.result_timeout.ToTimedelta()
                else settings.command_default_result_timeout
            ),
            trace_context=current_trace_context(),
        ),
    )


def _parameters(
    request: command_pb2.SendCommandRequest, spec: command_delivery_pb2.CommandSpec
) -> dict[str, object]:
    size = request.parameters.ByteSize()
    limit = command_parameters.MAX_PARAMETERS_BYTES
    if size > limit:
        raise InvalidArgument(
            f"parameters are {size:,} bytes encoded, over the limit of {limit:,}",
            [FieldViolation("parameters", f"at most {limit:,} bytes encoded; got {size:,}")],
        )
    values = command_parameters.as_dict(request.parameters)
    violations = command_parameters.check(spec.parameters, values)
    if violations:
        raise InvalidArgument("invalid parameters: " + ", ".join(v.field for v in violations), violations)
    return values


def _expire_time(request: command_pb2.SendCommandRequest, now: datetime, default_ttl: timedelta) -> datetime:
    if request.HasField("expire_time"):
        expire = request.expire_time.ToDatetime(tzinfo=UTC)
        if expire - now > MAX_EXPIRY:
            raise InvalidArgument(
                "expire_time is more than 30 days ahead",
                [FieldViolation("expire_time", "at most 30 days from now")],
            )
        return expire
    if request.HasField("ttl"):
        return now + request.ttl.ToTimedelta()
    return now + default_ttl
