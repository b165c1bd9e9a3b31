"""Wiring of the control service: pool, command watch hub and clock, servicer, health, reflection.

`start_control_server` is what `sensormesh control`, `sensormesh up` and the
tests call; it returns a handle with the bound port and `stop(grace)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sensormesh.v1 import alert_pb2, alert_pb2_grpc, command_pb2, command_pb2_grpc

from control_service.alert_service import AlertServicer
from control_service.alerting.engine import AlertEngine
from control_service.alerting.receivers import Alertmanager, Receiver, Webhook
from control_service.change_watch import ChangeHub
from control_service.command_clock import CommandClock
from control_service.command_service import CommandServicer
from control_service.command_watch import command_hub
from control_service.settings import ControlSettings
from sensormesh_core.access.api_keys import ApiKeys
from sensormesh_core.access.audit_log import AuditLog
from sensormesh_core.access.forwarded import ForwardedIdentity
from sensormesh_core.access.interceptor import AccessInterceptor
from sensormesh_core.command_telemetry import CommandMetrics
from sensormesh_core.grpc_errors import ErrorMappingInterceptor
from sensormesh_core.grpc_options import operator_server_options
from sensormesh_core.grpc_tls import add_port
from sensormesh_core.storage import alerts
from sensormesh_core.storage.alerts import AlertRecord
from sensormesh_core.storage.commands import CommandRecord
from sensormesh_core.storage.database import Database, open_database
from sensormesh_core.telemetry import Telemetry, configure_telemetry

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    command_pb2.DESCRIPTOR.services_by_name["CommandService"].full_name,
    alert_pb2.DESCRIPTOR.services_by_name["AlertService"].full_name,
)


@dataclass
class ControlServer:
    """A running control service."""

    port: int
    hub: ChangeHub[CommandRecord]
    clock: CommandClock
    alert_hub: ChangeHub[AlertRecord]
    alerting: AlertEngine | None
    _server: grpc.aio.Server = field(repr=False)
    _health: health.aio.HealthServicer = field(repr=False)
    _pool: asyncpg.Pool = field(repr=False)
    _clock_task: asyncio.Task[None] = field(repr=False)
    _database: Database | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, stop the clock, let calls finish for `grace` seconds (once)."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        if self.alerting is not None:
            await self.alerting.stop()
        self._clock_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._clock_task
        await self._server.stop(grace)
        await self.hub.stop()
        await self.alert_hub.stop()
        await self._pool.close()
        if self._database is not None:
            self._database.close()
        log.info("event=control_stopped port=%d", self.port)


def _options(settings: ControlSettings) -> list[tuple[str, Any]]:
    return operator_server_options(
        max_receive_bytes=settings.control_max_message_bytes,
        max_connection_age=settings.control_max_connection_age,
    )


async def start_control_server(
    settings: ControlSettings, *, database_url: str | None = None, telemetry: Telemetry | None = None
) -> ControlServer:
    """Start serving on `settings.control_listen` (port 0 picks one)."""
    database = None
    if database_url is None:
        database = open_database(settings)
        database_url = database.url
    url = database_url
    pool = await asyncpg.create_pool(url, min_size=settings.pool_min_size, max_size=settings.pool_max_size)

    def connect() -> Any:
        return asyncpg.connect(url)

    hub = command_hub(pool, connect, max_watchers=settings.command_max_watchers)
    await hub.start()
    alert_hub = alert_watch_hub(pool, connect, max_watchers=settings.command_max_watchers)
    await alert_hub.start()
    receivers = alert_receivers(settings)
    if telemetry is None:  # spans and metrics as the OTEL_* variables say, without touching globals
        telemetry = configure_telemetry("sensormesh-control", set_global=False)
    metrics = CommandMetrics(telemetry.meter("sensormesh.commands"))
    access = AccessInterceptor(
        SERVICE_NAMES,
        keys=ApiKeys(pool, settings.credential_cache_ttl.total_seconds()),
        audit=AuditLog(pool),
        forwarded=ForwardedIdentity.trusted_from(settings),
        recheck_interval=settings.stream_recheck_interval.total_seconds(),
    )
    interceptors = [*telemetry.server_interceptors(), ErrorMappingInterceptor(), access]
    server = grpc.aio.server(interceptors=interceptors, options=_options(settings))
    command_pb2_grpc.add_CommandServiceServicer_to_server(
        CommandServicer(pool, hub, metrics, settings), server
    )
    alert_pb2_grpc.add_AlertServiceServicer_to_server(
        AlertServicer(pool, alert_hub, [r.name for r in receivers], settings), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = add_port(server, settings.control_listen)  # TLS when SENSORMESH_TLS_* name a certificate
    await server.start()
    clock = CommandClock(
        pool,
        metrics,
        interval=settings.command_sweep_interval.total_seconds(),
        retention=settings.command_retention,
    )
    clock_task = asyncio.create_task(clock.run(), name="command-clock")
    alerting = None
    if settings.alerts_enabled:
        alerting = AlertEngine(pool, connect, receivers, settings)
        await alerting.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("event=control_serving address=%s port=%d", settings.control_listen, port)
    return ControlServer(
        port, hub, clock, alert_hub, alerting, server, health_servicer, pool, clock_task, database
    )


def alert_receivers(settings: ControlSettings) -> list[Receiver]:
    """The Alertmanagers and webhooks the settings name."""
    link = settings.alert_link_base.rstrip("/")
    found: list[Receiver] = [Alertmanager(url, link) for url in settings.alertmanager_urls]
    if settings.alert_webhook_urls:
        assert settings.alert_webhook_secret is not None  # the settings' validator saw to it
        secret = settings.alert_webhook_secret.get_secret_value().encode()
        found += [Webhook(url, secret, link) for url in settings.alert_webhook_urls]
    return found


def alert_watch_hub(pool: asyncpg.Pool, connect: Any, *, max_watchers: int) -> ChangeHub[AlertRecord]:
    return ChangeHub(
        pool,
        connect,
        channel=alerts.CHANNEL,
        id_key="a",
        read_many=alerts.get_many,
        max_watchers=max_watchers,
        what="alert",
    )
