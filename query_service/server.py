"""Wiring of the query service: pool, live hub, servicers, health, reflection.

`start_query_server` is what `sensormesh query`, `sensormesh up` and the
tests call; it returns a handle with the bound port and `stop(grace)`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sensormesh.v1 import (
    access_pb2,
    access_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    device_pb2,
    device_pb2_grpc,
    frame_pb2,
    frame_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)

from query_service.access_service import AccessServicer
from query_service.audit_service import AuditServicer
from query_service.device_service import DeviceServicer
from query_service.frame_service import FrameServicer
from query_service.live.hub import LiveHub
from query_service.live.sources import FramesSource
from query_service.query_service import QueryServicer
from query_service.settings import QuerySettings
from sensormesh_core.access.api_keys import ApiKeys
from sensormesh_core.access.audit_log import AuditLog
from sensormesh_core.access.forwarded import ForwardedIdentity
from sensormesh_core.access.interceptor import AccessInterceptor
from sensormesh_core.grpc_errors import ErrorMappingInterceptor
from sensormesh_core.grpc_options import operator_server_options
from sensormesh_core.grpc_tls import add_port
from sensormesh_core.storage.database import Database, open_database
from sensormesh_core.storage.frame_blobs import PostgresFrameBlobs
from sensormesh_core.storage.maintenance import storage_backend
from sensormesh_core.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    device_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name,
    query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
    frame_pb2.DESCRIPTOR.services_by_name["FrameService"].full_name,
    access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)


@dataclass
class QueryServer:
    """A running query service."""

    port: int
    hub: LiveHub
    frame_hub: LiveHub
    _server: grpc.aio.Server = field(repr=False)
    _health: health.aio.HealthServicer = field(repr=False)
    _pool: asyncpg.Pool = field(repr=False)
    _database: Database | None = field(default=None, repr=False)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, end live feeds, let calls finish for `grace` seconds."""
        await self._health.enter_graceful_shutdown()
        await self.hub.stop()
        await self.frame_hub.stop()
        await self._server.stop(grace)
        await self._pool.close()
        if self._database is not None:
            self._database.close()
        log.info("event=query_stopped port=%d", self.port)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (a round trip per read, and a live feed
    reads on every commit signal). asyncpg still rolls back an open transaction; nothing
    here sets session state (no SET, LISTEN, cursors or advisory locks on pooled
    connections: the hub LISTENs on a connection of its own)."""


def _options(settings: QuerySettings) -> list[tuple[str, Any]]:
    return operator_server_options(
        max_receive_bytes=settings.query_max_message_bytes,
        max_connection_age=settings.max_connection_age,
        max_connection_age_grace=settings.max_connection_age_grace,
        keepalive_time=settings.keepalive_time,
        keepalive_timeout=settings.keepalive_timeout,
    )


async def start_query_server(
    settings: QuerySettings, *, database_url: str | None = None, telemetry: Telemetry | None = None
) -> QueryServer:
    """Start serving on `settings.query_listen` (port 0 picks one)."""
    database = None
    if database_url is None:
        database = open_database(settings)
        database_url = database.url
    url = database_url
    pool = await asyncpg.create_pool(
        url, min_size=settings.pool_min_size, max_size=settings.pool_max_size, reset=_keep_session
    )
    async with pool.acquire() as conn:
        backend = await storage_backend(conn)
    hub = LiveHub(
        pool,
        lambda: asyncpg.connect(url),
        max_subscribers=settings.max_subscribers,
        queue_size=settings.subscriber_queue_size,
        order_wait=settings.live_order_wait.total_seconds(),
    )
    await hub.start()
    frame_hub = LiveHub(
        pool,
        lambda: asyncpg.connect(url),
        max_subscribers=settings.max_subscribers,
        queue_size=settings.frame_subscriber_queue_size,
        order_wait=settings.live_order_wait.total_seconds(),
        source=FramesSource(),
    )
    await frame_hub.start()
    access = AccessInterceptor(
        SERVICE_NAMES,
        keys=ApiKeys(pool, settings.credential_cache_ttl.total_seconds()),
        audit=AuditLog(pool),
        forwarded=ForwardedIdentity.trusted_from(settings),
        recheck_interval=settings.stream_recheck_interval.total_seconds(),
    )
    interceptors = [
        *(telemetry.server_interceptors() if telemetry else []),
        ErrorMappingInterceptor(),
        access,
    ]
    server = grpc.aio.server(interceptors=interceptors, options=_options(settings))
    device_pb2_grpc.add_DeviceServiceServicer_to_server(
        DeviceServicer(pool, default_page_size=settings.devices_page_size), server
    )
    query_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(pool, hub, backend, settings), server)
    frame_pb2_grpc.add_FrameServiceServicer_to_server(
        FrameServicer(pool, frame_hub, PostgresFrameBlobs(), settings), server
    )
    page_size = settings.devices_page_size
    access_pb2_grpc.add_AccessServiceServicer_to_server(
        AccessServicer(pool, default_page_size=page_size), server
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditServicer(pool, default_page_size=page_size), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = add_port(server, settings.query_listen)  # TLS when SENSORMESH_TLS_* name a certificate
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("event=query_serving address=%s port=%d backend=%s", settings.query_listen, port, backend.value)
    return QueryServer(port, hub, frame_hub, server, health_servicer, pool, database)
