"""CommandDeliveryService: the device's command channel (proto/sensormesh/v1/command_delivery.proto).

The access interceptor has authenticated the device before the handler runs;
the session checks that it speaks only as itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sensormesh.v1 import command_delivery_pb2, command_delivery_pb2_grpc

from ingest_service.app import IngestApp
from ingest_service.command_session import CommandSession
from sensormesh_core.access.principal import current_caller


class CommandDeliveryServicer(command_delivery_pb2_grpc.CommandDeliveryServiceServicer):
    """Hands each stream to a CommandSession."""

    def __init__(self, app: IngestApp) -> None:
        self._app = app

    async def ConnectCommands(  # noqa: N802 - named by the contract
        self,
        request_iterator: AsyncIterator[command_delivery_pb2.ConnectCommandsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[command_delivery_pb2.ConnectCommandsResponse]:
        app = self._app
        # Headers at once: the device writes its hello after them (see CommandDeliveryService).
        await context.send_initial_metadata(())
        session = CommandSession(
            app,
            app.command_channels,
            app.command_metrics,
            current_caller(),
            poll_interval=app.settings.ingest_command_poll_interval.total_seconds(),
            heartbeat_interval=app.settings.ingest_command_heartbeat.total_seconds(),
        )
        async for response in session.run(request_iterator):
            yield response
