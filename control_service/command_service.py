"""CommandService: commands to devices over gRPC (and REST through Envoy).

The access interceptor has checked the caller's role before a handler runs;
handlers keep a scoped key to its devices (others are NOT_FOUND, as if they
did not exist).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import command_pb2, command_pb2_grpc

from control_service.change_watch import ChangeHub, changes
from control_service.command_watch import command_watcher
from control_service.sending import send_command
from control_service.settings import ControlSettings
from sensormesh_core import page_tokens
from sensormesh_core.access.principal import current_caller
from sensormesh_core.command_messages import command_message
from sensormesh_core.command_telemetry import CommandMetrics
from sensormesh_core.storage import commands, registry
from sensormesh_core.validation import validate

log = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
ALL_DEVICES = "-"


class CommandServicer(command_pb2_grpc.CommandServiceServicer):
    """Validates, calls the domain or storage function, maps the result."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: ChangeHub[commands.CommandRecord],
        metrics: CommandMetrics,
        settings: ControlSettings,
    ) -> None:
        self._pool = pool
        self._hub = hub
        self._metrics = metrics
        self._settings = settings

    async def SendCommand(
        self, request: command_pb2.SendCommandRequest, context: Context
    ) -> command_pb2.SendCommandResponse:
        validate(request)
        caller = current_caller()
        async with self._pool.acquire() as conn:
            record, created = await send_command(conn, request, caller, self._settings)
        if created:
            self._metrics.transition(record.state)
        log.info(
            "event=command_sent device_id=%s command_id=%d name=%s by=%s",
            record.device_id,
            record.command_id,
            record.name,
            caller.actor,
        )
        return command_pb2.SendCommandResponse(command=command_message(record))

    async def GetCommand(
        self, request: command_pb2.GetCommandRequest, context: Context
    ) -> command_pb2.GetCommandResponse:
        validate(request)
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device_id, current_caller().scope)
            record = await commands.get(conn, request.device_id, request.command_id)
        return command_pb2.GetCommandResponse(command=command_message(record))

    async def ListCommands(
        self, request: command_pb2.ListCommandsRequest, context: Context
    ) -> command_pb2.ListCommandsResponse:
        validate(request)
        scope = current_caller().scope
        states = sorted({int(state) for state in request.states})
        parameters = {"device_id": request.device_id, "states": states}
        before = page_tokens.id_before(request.page_token, "commands", parameters)
        size = request.page_size or self._settings.commands_page_size
        device_id = None if request.device_id == ALL_DEVICES else request.device_id
        async with self._pool.acquire() as conn:
            if device_id is not None:
                await registry.require_visible(conn, device_id, scope)
            records = await commands.list_commands(
                conn, device_id=device_id, states=states, before_id=before, limit=size + 1, scope=scope
            )
        response = command_pb2.ListCommandsResponse(commands=[command_message(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = page_tokens.encode(
                "commands", parameters, {"before": records[size - 1].command_id}
            )
        return response

    async def CancelCommand(
        self, request: command_pb2.CancelCommandRequest, context: Context
    ) -> command_pb2.CancelCommandResponse:
        validate(request)
        caller = current_caller()
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device_id, caller.scope)
            record = await commands.cancel(conn, request.device_id, request.command_id, caller.actor)
        self._metrics.transition(record.state)
        log.info(
            "event=command_canceled device_id=%s command_id=%d by=%s",
            record.device_id,
            record.command_id,
            caller.actor,
        )
        return command_pb2.CancelCommandResponse(command=command_message(record))

    async def WatchCommands(
        self, request: command_pb2.WatchCommandsRequest, context: Context
    ) -> AsyncIterator[command_pb2.WatchCommandsResponse]:
        validate(request)
        scope = current_caller().scope
        device_id = None if request.device_id == ALL_DEVICES else request.device_id
        watcher = command_watcher(device_id, request.command_id or None, scope)
        self._hub.subscribe(watcher)  # first, so no change after the reads below is missed
        try:
            async with self._pool.acquire() as conn:
                if device_id is not None:
                    await registry.require_visible(conn, device_id, scope)
                first = None
                if device_id is not None and request.command_id:
                    first = await commands.get(conn, device_id, request.command_id)
            # Headers now: a REST client through Envoy sees 200 when the watch starts, not with
            # the first change.
            await context.send_initial_metadata(())
            if first is not None:
                watcher.seen(first)
                yield command_pb2.WatchCommandsResponse(command=command_message(first))
                if first.finished:
                    return
            heartbeat = self._settings.command_watch_heartbeat.total_seconds()
            async for record in changes(watcher, heartbeat, "ListCommands"):
                yield command_pb2.WatchCommandsResponse(command=command_message(record) if record else None)
                if record is not None and request.command_id and record.finished:
                    return
        finally:
            self._hub.unsubscribe(watcher)
