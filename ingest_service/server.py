"""Start the ingest service: a `grpc.aio` server with IngestService, health
checking and reflection, on the database the settings name.

    handle = await start(IngestSettings(ingest_listen="127.0.0.1:0"))
    ...  # handle.port is the bound port
    await handle.stop(grace=10)

While the database cannot be reached, health reports the service
NOT_SERVING (readiness), the overall status stays SERVING (liveness).

`stop` is graceful: health turns NOT_SERVING, streams stop taking batches,
batches already received commit, open streams end with UNAVAILABLE (the
device resumes from GetUploadOffset, on another replica if there is one),
then the pool and the embedded database (if any) close.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sensormesh.v1 import command_delivery_pb2, command_delivery_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from ingest_service.app import IngestApp
from ingest_service.command_delivery import CommandDeliveryServicer
from ingest_service.health import DatabaseHealth
from ingest_service.observability import instrument_asyncpg
from ingest_service.service import IngestServicer
from ingest_service.settings import IngestSettings
from sensormesh_core.access.interceptor import AccessInterceptor
from sensormesh_core.grpc_errors import ErrorMappingInterceptor
from sensormesh_core.grpc_options import metadata_options
from sensormesh_core.grpc_tls import add_port
from sensormesh_core.storage import migrate
from sensormesh_core.storage.database import Database, open_database
from sensormesh_core.telemetry import Telemetry, configure_telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
COMMAND_DELIVERY = command_delivery_pb2.DESCRIPTOR.services_by_name["CommandDeliveryService"].full_name
SERVICE_NAMES = (SERVICE_NAME, COMMAND_DELIVERY)


@dataclass
class IngestServer:
    """A running ingest service."""

    port: int
    app: IngestApp
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    database: Database
    telemetry: Telemetry
    database_health: asyncio.Task[None]
    _owns_telemetry: bool = False
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, commit what was received, close. `grace` bounds the wait (seconds)."""
        if self._stopped.is_set():
            return
        log.info("event=ingest_stopping grace=%s", grace)
        self.database_health.cancel()
        await self.health.enter_graceful_shutdown()
        self.app.stopping.set()
        await self.server.stop(grace)
        await self.app.close()
        await asyncio.to_thread(self.database.close)
        if self._owns_telemetry:
            self.telemetry.shutdown()
        self._stopped.set()
        log.info("event=ingest_stopped")

    async def wait_for_termination(self) -> None:
        """Return once `stop` has finished."""
        await self._stopped.wait()


def server_options(settings: IngestSettings) -> list[tuple[str, int]]:
    """Message and metadata limits, keepalive and connection age (so streams rebalance across replicas)."""
    ms = 1000
    return [
        ("grpc.max_receive_message_length", settings.ingest_max_message_bytes),
        ("grpc.max_send_message_length", settings.ingest_max_message_bytes),
        ("grpc.max_connection_age_ms", int(settings.ingest_max_connection_age.total_seconds() * ms)),
        (
            "grpc.max_connection_age_grace_ms",
            int(settings.ingest_max_connection_age_grace.total_seconds() * ms),
        ),
        ("grpc.keepalive_time_ms", int(settings.ingest_keepalive_time.total_seconds() * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.ingest_keepalive_timeout.total_seconds() * ms)),
        # Agents on flaky links ping every 30 s or more; allow it, even between calls.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10 * ms),
        ("grpc.http2.max_pings_without_data", 0),
        *metadata_options(),
    ]


async def _database(settings: IngestSettings) -> Database:
    database = await asyncio.to_thread(open_database, settings)
    if database.embedded is not None and settings.ingest_migrate_embedded:
        await asyncio.to_thread(migrate.upgrade, database.url, timescaledb=settings.timescaledb)
    return database


async def _open_app(settings: IngestSettings, telemetry: Telemetry) -> tuple[Database, IngestApp]:
    """The database and the app on it; the database is closed again if the app cannot open."""
    database = await _database(settings)
    try:
        app = await IngestApp.open(settings, database.url, telemetry)
    except BaseException:
        await asyncio.to_thread(database.close)
        raise
    return database, app


def _grpc_server(
    settings: IngestSettings, telemetry: Telemetry, app: IngestApp
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The server with IngestService, health and reflection added, not yet bound or started."""
    server = grpc.aio.server(
        interceptors=[
            *telemetry.server_interceptors(),
            ErrorMappingInterceptor(),
            AccessInterceptor(SERVICE_NAMES, devices=app.auth, recheck_interval=app.recheck_interval),
        ],
        options=server_options(settings),
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(app), server)
    command_delivery_pb2_grpc.add_CommandDeliveryServiceServicer_to_server(
        CommandDeliveryServicer(app), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    return server, health_servicer


async def start(
    settings: IngestSettings | None = None, *, telemetry: Telemetry | None = None
) -> IngestServer:
    """Start serving; returns once the port is bound and the database is reachable.

    Without `telemetry`, traces and metrics follow the OTEL_* variables
    (nothing is exported when they are unset) without touching globals.
    """
    settings = settings or IngestSettings()
    owns_telemetry = telemetry is None
    if telemetry is None:
        telemetry = configure_telemetry("sensormesh-ingest", set_global=False)
    instrument_asyncpg(telemetry.tracer_provider, recording=telemetry.recording)
    database, app = await _open_app(settings, telemetry)
    server, health_servicer = _grpc_server(settings, telemetry, app)
    try:
        port = add_port(server, settings.ingest_listen)  # TLS when SENSORMESH_TLS_* name a certificate
        await server.start()
    except BaseException:
        await app.close()
        await asyncio.to_thread(database.close)
        raise
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    interval = settings.ingest_health_interval.total_seconds()
    watcher = DatabaseHealth(health_servicer, SERVICE_NAME, app.pool, interval)
    database_health = asyncio.create_task(watcher.run(), name="database-health")
    log.info(
        "event=ingest_listening address=%s port=%d backend=%s",
        settings.ingest_listen,
        port,
        app.backend.value,
    )
    return IngestServer(
        port, app, server, health_servicer, database, telemetry, database_health, owns_telemetry
    )
