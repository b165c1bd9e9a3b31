"""The live hub: one LISTEN connection per process, fan-out to subscribers.

Ingest sends a `CommitSignal` (device, sequence and time range) on
`live_signal.CHANNEL` after each commit. The hub ignores signals of devices
nobody here watches. For a watched device, a single worker task per device
reads exactly the signalled rows back (signals that arrive meanwhile are
merged into one read, so a busy device costs one query round per read, not
per batch), turns them into `Reading` messages once and offers them to every
subscription of the device. Offering never waits (see subscription.py), so
no subscriber can slow the hub, and the hub never touches ingest.

If the LISTEN connection drops, the hub reconnects with backoff; signals sent
meanwhile are lost, so after reconnecting it compares each watched device's
committed sequence with the last one it delivered and reports the difference
to that device's subscribers as missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from query_service.live.subscription import Subscription
from query_service.storage.live_rows import Window, committed_readings
from sensormesh_core.errors import ResourceExhausted
from sensormesh_core.storage.live_signal import CHANNEL, CommitSignal

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class LiveHub:
    """Subscriptions of this process, fed from PostgreSQL notifications."""

    def __init__(
        self, pool: asyncpg.Pool, connect: Connect, *, max_subscribers: int, queue_size: int
    ) -> None:
        self._pool = pool
        self._connect = connect
        self._max_subscribers = max_subscribers
        self._queue_size = queue_size
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._pending: dict[str, CommitSignal] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._last_sequence: dict[str, int] = {}
        self._listener: asyncpg.Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._stopping = False
        self.signals_received = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscriptions.values())

    @property
    def busy(self) -> bool:
        """Whether signals are being read back or wait to be (tests and shutdown wait on it)."""
        return bool(self._workers or self._pending)

    @property
    def listening(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and LISTEN; keeps reconnecting in the background afterwards."""
        await self._listen()
        self._supervisor = asyncio.create_task(self._supervise(), name="live-hub-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._workers.values()):
            task.cancel()
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.close()
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()

    def subscribe(self, sub: Subscription) -> None:
        """Register `sub`; raises ResourceExhausted over the process's limit."""
        if self.subscriber_count >= self._max_subscribers:
            raise ResourceExhausted(
                f"this query process serves its maximum of {self._max_subscribers} live feeds; "
                "retry later or through another replica"
            )
        self._subscriptions.setdefault(sub.device_id, set()).add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscriptions[sub.device_id]
                self._last_sequence.pop(sub.device_id, None)

    async def _listen(self) -> None:
        conn = await self._connect()
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(CHANNEL, self._on_notify)
        self._listener = conn
        self._lost.clear()
        self._connected.set()
        log.info("event=live_listening channel=%s", CHANNEL)

    def _on_terminated(self, _conn: asyncpg.Connection) -> None:
        if not self._stopping:
            log.warning("event=live_listener_lost channel=%s", CHANNEL)
        self._connected.clear()
        self._lost.set()

    async def _supervise(self) -> None:
        delay = 0.1
        while True:
            await self._lost.wait()
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event=live_reconnect_failed error=%r retry_in_s=%.1f", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            await self._report_gaps()

    async def _report_gaps(self) -> None:
        """After a reconnect: tell subscribers how many sequence numbers they may have missed."""
        devices = [d for d in self._subscriptions if d in self._last_sequence]
        if not devices:
            return
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT device_id, committed_sequence FROM upload_offsets WHERE device_id = ANY($1::text[])",
                devices,
            )
        for row in rows:
            device_id, committed = row["device_id"], row["committed_sequence"]
            gap = committed - self._last_sequence.get(device_id, committed)
            if gap > 0:
                self._last_sequence[device_id] = committed
                for sub in self._subscriptions.get(device_id, ()):
                    sub.report_missed(gap)
                log.warning("event=live_gap_reported device_id=%s sequences=%d", device_id, gap)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.signals_received += 1
        try:
            signal = CommitSignal.decode(payload)
        except ValueError:
            log.warning("event=live_signal_malformed payload=%r", payload[:200])
            return
        if signal.device_id not in self._subscriptions:
            return
        pending = self._pending.get(signal.device_id)
        self._pending[signal.device_id] = signal if pending is None else pending.merge(signal)
        if signal.device_id not in self._workers:
            self._workers[signal.device_id] = asyncio.create_task(
                self._drain(signal.device_id), name=f"live-{signal.device_id}"
            )

    async def _drain(self, device_id: str) -> None:
        """Read back and fan out the device's pending signals until none are left."""
        try:
            while (signal := self._pending.pop(device_id, None)) is not None:
                if device_id not in self._subscriptions:
                    continue
                try:
                    await self._deliver(signal)
                except (OSError, asyncpg.PostgresError) as exc:
                    log.error(
                        "event=live_read_failed device_id=%s sequences=%d-%d error=%r",
                        device_id,
                        signal.first_sequence,
                        signal.last_sequence,
                        exc,
                    )
                    for sub in self._subscriptions.get(device_id, ()):
                        sub.report_missed(signal.last_sequence - signal.first_sequence + 1)
        finally:
            self._workers.pop(device_id, None)

    async def _deliver(self, signal: CommitSignal) -> None:
        window = Window(
            signal.device_id, signal.first_time, signal.last_time, signal.first_sequence, signal.last_sequence
        )
        async with self._pool.acquire() as conn:
            readings = await committed_readings(conn, window)
        previous = self._last_sequence.get(signal.device_id, 0)
        self._last_sequence[signal.device_id] = max(previous, signal.last_sequence)
        for sub in list(self._subscriptions.get(signal.device_id, ())):
            sub.offer(readings)
