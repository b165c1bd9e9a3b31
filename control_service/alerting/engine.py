"""Alert evaluation in a control process: compete for the lease, and while leading, judge
readings, watch for silences and deliver notifications."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from control_service.alerting.evaluator import Evaluator
from control_service.alerting.leader import Leadership
from control_service.alerting.outbox import Outbox
from control_service.alerting.receivers import Receiver
from control_service.alerting.silence import watch_silences
from control_service.settings import ControlSettings
from sensormesh_core.storage import alerts
from sensormesh_core.storage.listener import Connect

log = logging.getLogger(__name__)


class AlertEngine:
    """`start()` begins competing; `stop()` ends evaluation (a standby takes over)."""

    def __init__(
        self, pool: asyncpg.Pool, connect: Connect, receivers: Sequence[Receiver], settings: ControlSettings
    ) -> None:
        self._pool = pool
        self._settings = settings
        names = [r.name for r in receivers]
        self.evaluator = Evaluator(
            pool, connect, names, round_interval=settings.alert_round_interval.total_seconds()
        )
        self.outbox = Outbox(pool, receivers, give_up=settings.alert_notification_give_up)
        self.leadership = Leadership(connect, retry=settings.alert_leader_retry.total_seconds())
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.leadership.run(self._lead), name="alert-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _lead(self, epoch: int) -> None:
        s = self._settings
        tasks = [
            asyncio.create_task(self.evaluator.lead(epoch), name="alert-evaluator"),
            asyncio.create_task(
                watch_silences(
                    self._pool,
                    lambda: self.evaluator.rules,
                    epoch,
                    self.evaluator.receivers,
                    s.alert_no_data_interval.total_seconds(),
                ),
                name="alert-silences",
            ),
            asyncio.create_task(self.outbox.run(), name="alert-outbox"),
            asyncio.create_task(self._prune(), name="alert-prune"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _prune(self) -> None:
        while True:
            try:
                async with self._pool.acquire() as conn:
                    gone = await alerts.prune(conn, self._settings.alert_retention)
                if any(gone):
                    log.info("event=alerts_pruned alerts=%d notifications=%d", *gone)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("event=alert_prune_failed error=%r", exc)
            await asyncio.sleep(3600)
