"""One LISTEN connection that stays up: notifications to a callback, reconnects with backoff.

Notifications sent while the connection is down are lost, which is what
PostgreSQL's LISTEN gives; so after every reconnect the listener calls
`on_reconnect`, where its owner re-reads what it may have missed (the commit
signal is a hint, the database is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Listener:
    """LISTENs on `channel`; `on_payload` runs on the event loop for each notification."""

    def __init__(
        self,
        connect: Connect,
        channel: str,
        on_payload: Callable[[str], None],
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        max_delay: float = 5.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._max_delay = max_delay
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Connect and LISTEN (raising if the database is away); keeps reconnecting afterwards."""
        await self._listen()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _listen(self) -> None:
        conn = await self._connect()
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(self._channel, self._notified)
        self._conn = conn
        self._lost.clear()
        self.connected.set()
        log.info("event=listening channel=%s", self._channel)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    def _on_terminated(self, _conn: asyncpg.Connection) -> None:
        if not self._stopping:
            log.warning("event=listener_lost channel=%s", self._channel)
        self.connected.clear()
        self._lost.set()

    async def _supervise(self) -> None:
        delay = 0.1
        while True:
            await self._lost.wait()
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "event=listener_reconnect_failed channel=%s error=%r retry_in_s=%.1f",
                    self._channel,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            delay = 0.1
            if self._on_reconnect is not None:
                try:
                    await self._on_reconnect()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("event=listener_resync_failed channel=%s error=%r", self._channel, exc)
