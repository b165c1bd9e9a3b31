"""The live-feed signal: after a batch commits, tell every query replica.

Signals go out with `pg_notify` from a connection of their own, after the
data transaction and never inside it: a NOTIFY in a transaction takes a
cluster-wide lock at commit that would serialise every ingest commit. Signals
of one device are merged over a short window (`CommitSignal.merge`), and all
devices' signals of a window leave in one statement, so the notification
rate stays bounded however fast batches commit.

A signal is a hint for live subscribers, not part of exactly-once delivery:
when the connection fails the pending signals are dropped (and logged), and
the notifier reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from sensormesh_core.storage.live_signal import CHANNEL, CommitSignal

log = logging.getLogger(__name__)

_NOTIFY = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
_RECONNECT_DELAY = 1.0

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class CommitNotifier:
    """Coalesces commit signals per device and sends them after `window` seconds."""

    def __init__(self, connect: Connect, window: float) -> None:
        self._connect = connect
        self._window = window
        self._pending: dict[str, CommitSignal] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._stopping = False
        self.sent = 0  # NOTIFY payloads sent, for tests and the benchmark
        self.dropped = 0

    def publish(self, signal: CommitSignal) -> None:
        """Queue a signal; never blocks and never fails the caller."""
        known = self._pending.get(signal.device_id)
        self._pending[signal.device_id] = signal if known is None else known.merge(signal)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commit-notifier")

    async def stop(self) -> None:
        """Send what is pending, then close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._stopping:
                await asyncio.sleep(self._window)  # let more commits join this notification
            self._wake.clear()
            await self._flush()
            if self._stopping and not self._pending:
                return

    async def _flush(self) -> None:
        if not self._pending:
            return
        signals, self._pending = self._pending, {}
        payloads = [signal.encode() for signal in signals.values()]
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            await self._conn.execute(_NOTIFY, CHANNEL, payloads)
            self.sent += len(payloads)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.dropped += len(payloads)
            log.warning("event=notify_failed signals_dropped=%d error=%r", len(payloads), exc)
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._conn = None
            if not self._stopping:
                await asyncio.sleep(_RECONNECT_DELAY)
