"""Readiness that follows the database: the service's health turns
NOT_SERVING while PostgreSQL cannot be reached, and SERVING again when it can.

Kubernetes' readiness probe and Envoy's health check ask for
`sensormesh.v1.IngestService`, so a replica that cannot commit stops getting
streams; the overall status ("") stays SERVING, because restarting the
process (liveness) would not bring the database back.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DatabaseHealth:
    """Checks the database every `interval` seconds and sets `service`'s status."""

    def __init__(
        self, servicer: health.aio.HealthServicer, service: str, pool: asyncpg.Pool, interval: float
    ) -> None:
        self._servicer = servicer
        self._service = service
        self._pool = pool
        self._interval = interval
        self.reachable = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            reachable = await self.check()
            if reachable != self.reachable:
                self.reachable = reachable
                await self._servicer.set(self._service, SERVING if reachable else NOT_SERVING)
                log.warning(
                    "event=database_%s service=%s", "reachable" if reachable else "unreachable", self._service
                )

    async def check(self) -> bool:
        """One `SELECT 1` through the pool, bounded by the interval."""
        try:
            async with asyncio.timeout(self._interval), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True
