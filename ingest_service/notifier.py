"""The live-feed signal: after a batch commits, tell every query replica.

Signals go out with `pg_notify` from a connection of their own, after the
data transaction and never inside it: a NOTIFY in a transaction takes a
cluster-wide lock at commit that would serialise every ingest commit. Signals
of one device are merged over a short window (`CommitSignal.merge`, when their
ranges adjoin), and all devices' signals of a window leave in one statement,
so the notification rate stays bounded however fast batches commit.

Readings' and camera frames' signals travel on their own channels
(`live_signal.CHANNEL`, `live_signal.FRAMES_CHANNEL`), through this one
notifier and its one connection; they are never merged across channels.

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

_NOTIFY = "SELECT pg_notify(n.channel, n.payload) FROM unnest($1::text[], $2::text[]) AS n(channel, payload)"
_RECONNECT_DELAY = 1.0

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class CommitNotifier:
    """Coalesces commit signals per device; sends them at most once per `window` seconds."""

    def __init__(self, connect: Connect, window: float) -> None:
        self._connect = connect
        self._window = window
        # Per channel and device, signals in commit order; adjoining ones are merged. A device
        # that committed on another replica in between has a hole here: those stay apart.
        self._pending: dict[tuple[str, str], list[CommitSignal]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self.sent = 0  # NOTIFY payloads sent, for tests and the benchmark
        self.dropped = 0

    def publish(self, signal: CommitSignal, channel: str = CHANNEL) -> None:
        """Queue a signal for `channel`; never blocks and never fails the caller."""
        queued = self._pending.setdefault((channel, signal.device_id), [])
        if queued and queued[-1].adjoins(signal):
            queued[-1] = queued[-1].merge(signal)
        else:
            queued.append(signal)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commit-notifier")

    async def stop(self) -> None:
        """Send what is pending, then close."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        """At most one statement per window, sent at the window's start: a commit
        after a quiet spell is signalled at once, and under steady commits each
        waits at most `window` (what a live subscriber adds to its latency)."""
        loop = asyncio.get_running_loop()
        last_flush = -self._window
        while True:
            await self._wake.wait()
            delay = last_flush + self._window - loop.time()
            if delay > 0 and not self._stopping:
                # Commits meanwhile join this notification; `stop` cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
            self._wake.clear()
            last_flush = loop.time()
            await self._flush()
            if self._stopping and not self._pending:
                return

    async def _flush(self) -> None:
        if not self._pending:
            return
        signals, self._pending = self._pending, {}
        channels = [channel for (channel, _), queued in signals.items() for _ in queued]
        payloads = [signal.encode() for queued in signals.values() for signal in queued]
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            await self._conn.execute(_NOTIFY, channels, payloads)
            self.sent += len(payloads)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            # InternalClientError: the connection was cut while a statement was on it
            # ("cannot switch to state ..."); like the others, drop, reconnect, go on.
            self.dropped += len(payloads)
            log.warning("event=notify_failed signals_dropped=%d error=%r", len(payloads), exc)
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._conn = None
            if not self._stopping:
                await asyncio.sleep(_RECONNECT_DELAY)
