"""QueryService: history, latest values and live feeds of a device."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import query_pb2, query_pb2_grpc

from query_service.history_pages import list_readings
from query_service.live import feed
from query_service.live.hub import LiveHub
from query_service.live.live_queue import SubscriptionClosed
from query_service.live.subscription import Subscription
from query_service.request_checks import filter_violations, replay_violations, to_datetime, validate_with
from query_service.settings import QuerySettings
from query_service.storage.latest import latest_values
from sensormesh_core.access.principal import current_caller
from sensormesh_core.errors import NotFound, Unavailable
from sensormesh_core.storage.maintenance import Backend
from sensormesh_core.storage.registry import device_exists, require_visible

log = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Validates, calls one read function, maps the result."""

    def __init__(self, pool: asyncpg.Pool, hub: LiveHub, backend: Backend, settings: QuerySettings) -> None:
        self._pool = pool
        self._hub = hub
        self._backend = backend
        self._settings = settings

    async def ListReadings(
        self, request: query_pb2.ListReadingsRequest, context: Context
    ) -> query_pb2.ListReadingsResponse:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if current_caller().scope is not None:  # unscoped: list_readings answers NOT_FOUND itself
                await require_visible(conn, request.device_id, current_caller().scope)
            return await list_readings(
                conn,
                self._backend,
                request,
                default_page_size=self._settings.readings_page_size,
                default_span=self._settings.default_range,
                now=datetime.now(UTC),
            )

    async def GetLatestReadings(
        self, request: query_pb2.GetLatestReadingsRequest, context: Context
    ) -> query_pb2.GetLatestReadingsResponse:
        validate_with(request, lambda: filter_violations(request.sensors, request.quantities))
        async with self._pool.acquire() as conn:
            if current_caller().scope is not None:
                await require_visible(conn, request.device_id, current_caller().scope)
            rows = await latest_values(conn, request.device_id, request.sensors, request.quantities)
            if not rows and not await device_exists(conn, request.device_id):
                raise NotFound(f"device {request.device_id!r} does not exist")
        response = query_pb2.GetLatestReadingsResponse()
        for row in rows:
            value = response.values.add(
                sensor=row.sensor, quantity=row.quantity, unit=row.unit, value=row.value
            )
            value.sample_time.FromDatetime(row.time)
        return response

    async def WatchReadings(
        self, request: query_pb2.WatchReadingsRequest, context: Context
    ) -> AsyncIterator[query_pb2.WatchReadingsResponse]:
        start = request.start_time if request.HasField("start_time") else None
        validate_with(
            request,
            lambda: (
                filter_violations(request.sensors, request.quantities)
                + replay_violations(start, self._settings.replay_max_age, datetime.now(UTC))
            ),
        )
        async with self._pool.acquire() as conn:
            await require_visible(conn, request.device_id, current_caller().scope)
        sub = Subscription(
            request.device_id, request.sensors, request.quantities, self._settings.subscriber_queue_size
        )
        log.info("event=watch_started device_id=%s replay=%s", request.device_id, start is not None)
        try:
            async for message in feed.watch(
                self._hub,
                self._pool,
                sub,
                replay_from=to_datetime(start) if start is not None else None,
                heartbeat=self._settings.heartbeat_interval,
                on_subscribed=lambda: context.send_initial_metadata(()),
            ):
                yield message
        except SubscriptionClosed:
            raise Unavailable("the query service is shutting down; reconnect") from None
        finally:
            log.info(
                "event=watch_ended device_id=%s delivered=%d missed=%d",
                request.device_id,
                sub.delivered_count,
                sub.missed_total,
            )
