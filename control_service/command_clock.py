"""Time in the command lifecycle: overdue commands end, old ones go.

Every `interval` one statement ends what is overdue: QUEUED or SENT past
their expiry become EXPIRED, DELIVERED without a result within their timeout
become TIMED_OUT (`commands.end_overdue`); once an hour, commands that
finished longer ago than the retention are deleted. Each is a single
conditional statement, so every replica may run the clock at once: a command
ends once, whoever gets there first. A database outage skips a tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import asyncpg

from sensormesh_core.command_telemetry import CommandMetrics
from sensormesh_core.storage import commands
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


class CommandClock:
    """`await run()` until cancelled."""

    def __init__(
        self, pool: asyncpg.Pool, metrics: CommandMetrics, *, interval: float, retention: timedelta
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._interval = interval
        self._retention = retention
        self._pruned_at = -PRUNE_EVERY_S

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except RETRYABLE_DATABASE_ERRORS as exc:
                log.warning("event=command_clock_skipped reason=database_unavailable error=%r", exc)
            except Exception:  # keep the service up; the next tick retries
                log.exception("event=command_clock_failed")
            await asyncio.sleep(self._interval)

    async def tick(self) -> int:
        """End what is overdue now (and prune, when due); returns how many commands ended."""
        async with self._pool.acquire() as conn:
            ended = await commands.end_overdue(conn)
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = time.monotonic()
                pruned = await commands.prune(conn, self._retention)
                if pruned:
                    log.info("event=commands_pruned count=%d", pruned)
        for record in ended:
            self._metrics.transition(record.state)
            log.info(
                "event=command_ended device_id=%s command_id=%d state=%s",
                record.device_id,
                record.command_id,
                record.state_name,
            )
        return len(ended)
