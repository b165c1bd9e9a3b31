"""The outbox dispatcher: alert notifications leave the database for their receivers.

Every alert change wrote its notifications in its own transaction (storage/alerts.enqueue),
so evaluation never waits on a receiver and a change is never lost to one's outage. The
leader sends what is due, oldest first, per receiver; a failure is retried after 1 s,
doubling to `max_backoff`; a notification still undelivered after `give_up` is marked dead
(kept, with its last error, and logged) instead of being retried forever. A receiver no
longer configured gets nothing: its notifications are marked dead saying so.

Alertmanager forgets a firing alert that is not sent again within its resolve_timeout, so
every `resend` seconds every active alert is sent to it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from control_service.alerting.receivers import Alertmanager, DeliveryFailed, Receiver
from sensormesh_core.storage import alert_rules, alerts

log = logging.getLogger(__name__)

BATCH = 200


class Outbox:
    """Delivers due notifications while `run()` runs (on the leader)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        receivers: Sequence[Receiver],
        *,
        poll: float = 1.0,
        max_backoff: timedelta = timedelta(minutes=10),
        give_up: timedelta = timedelta(hours=24),
        resend: float = 60.0,
    ) -> None:
        self._pool = pool
        self._receivers = {r.name: r for r in receivers}
        self._poll = poll
        self._max_backoff = max_backoff
        self._give_up = give_up
        self._resend = resend
        self.delivered = 0
        self.failures = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            resent_at = time.monotonic()
            while True:
                try:
                    await self.deliver_due(client)
                    if self._resend and time.monotonic() - resent_at >= self._resend:
                        resent_at = time.monotonic()
                        await self.resend_active(client)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("event=alert_outbox_failed error=%r", exc)
                await asyncio.sleep(self._poll)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Send what is due now; returns how many notifications were delivered."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT notification_id, receiver, payload, attempts, create_time FROM alert_notifications "
                "WHERE delivered_time IS NULL AND dead_time IS NULL AND next_attempt_time <= now() "
                "ORDER BY notification_id LIMIT $1",
                BATCH,
            )
        by_receiver: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            by_receiver[row["receiver"]].append(row)
        delivered = 0
        for name, due in by_receiver.items():
            delivered += await self._deliver(client, name, due)
        return delivered

    async def _deliver(self, client: httpx.AsyncClient, name: str, due: list[asyncpg.Record]) -> int:
        ids = [row["notification_id"] for row in due]
        receiver = self._receivers.get(name)
        if receiver is None:
            await self._dead(ids, "the receiver is no longer configured")
            return 0
        payloads = [_json(row["payload"]) for row in due]
        try:
            await receiver.deliver(client, payloads)
        except DeliveryFailed as exc:
            self.failures += 1
            await self._failed(due, str(exc))
            return 0
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE alert_notifications SET delivered_time = now(), attempts = attempts + 1, last_error = '' "
                "WHERE notification_id = ANY($1::bigint[])",
                ids,
            )
        self.delivered += len(ids)
        return len(ids)

    async def _failed(self, due: list[asyncpg.Record], error: str) -> None:
        attempts = max(row["attempts"] for row in due) + 1
        backoff = min(2.0 ** (attempts - 1), self._max_backoff.total_seconds())
        ids = [row["notification_id"] for row in due]
        async with self._pool.acquire() as conn:
            dead = await conn.fetch(
                "UPDATE alert_notifications SET attempts = attempts + 1, last_error = $2, "
                "next_attempt_time = now() + make_interval(secs => $3), "
                "dead_time = CASE WHEN create_time < now() - $4::interval THEN now() END "
                "WHERE notification_id = ANY($1::bigint[]) RETURNING notification_id, receiver, dead_time",
                ids,
                error[:2000],
                backoff,
                self._give_up,
            )
        gone = [row for row in dead if row["dead_time"] is not None]
        log.warning(
            "event=alert_notification_failed receiver=%s notifications=%d attempts=%d retry_in_s=%.0f error=%r",
            due[0]["receiver"],
            len(due),
            attempts,
            backoff,
            error,
        )
        if gone:
            log.error(
                "event=alert_notifications_dead receiver=%s notifications=%d give_up=%s",
                gone[0]["receiver"],
                len(gone),
                self._give_up,
            )

    async def _dead(self, ids: list[int], why: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE alert_notifications SET dead_time = now(), last_error = $2 "
                "WHERE notification_id = ANY($1::bigint[])",
                ids,
                why,
            )
        log.warning("event=alert_notifications_dead notifications=%d reason=%r", len(ids), why)

    async def resend_active(self, client: httpx.AsyncClient) -> None:
        """Tell every Alertmanager of every active alert again (so it keeps them firing)."""
        managers = [r for r in self._receivers.values() if isinstance(r, Alertmanager)]
        if not managers:
            return
        async with self._pool.acquire() as conn:
            active = await alerts.active(conn)
            rules = {s.rule_id: s.rule for s in await alert_rules.all_rules(conn)} if active else {}
        if not active:
            return
        payloads = [
            {
                "event": "firing",
                "alert": alerts.alert_json(a),
                "rule_name": rules[a.rule_id].display_name if a.rule_id in rules else a.rule_id,
                "rule_description": rules[a.rule_id].description if a.rule_id in rules else "",
            }
            for a in active
        ]
        for manager in managers:
            try:
                await manager.deliver(client, payloads)
            except DeliveryFailed as exc:
                log.warning("event=alertmanager_resend_failed receiver=%s error=%r", manager.name, str(exc))


def _json(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value)
