"""The live hub: one LISTEN connection per process and channel, fan-out to subscribers.

One hub serves readings (WatchReadings), another camera frames
(WatchFrames); what differs between them, the channel and how a signal's
items are read back, is their `LiveSource` (sources.py). Below, "readings"
stands for either.

Ingest sends a `CommitSignal` (device, sequence and time range) on
`live_signal.CHANNEL` after each commit. The hub ignores signals of devices
nobody here watches. For a watched device, a single worker task per device
puts the signals back in sequence order (ordering.py: replicas' signals may
overtake each other), reads exactly the signalled rows back (signals that
arrive meanwhile are merged into one read, so a busy device costs one query
round per read, not per batch), turns them into `Reading` messages once and
offers them to every subscription of the device. Offering never waits (see
subscription.py), so no subscriber can slow the hub, and the hub never
touches ingest.

A `DeviceDeleted` message on the same channel ends the device's feeds with
NOT_FOUND.

If the LISTEN connection drops, it reconnects with backoff
(`sensormesh_core.storage.listener`); signals sent
meanwhile are lost, so after reconnecting it compares each watched device's
committed sequence with the last one it delivered and reports the difference
to that device's subscribers as missed (or ends their feeds, if the device
was deleted meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from query_service.live.ordering import DeviceOrder, Hold
from query_service.live.sources import LiveSource, ReadingsSource
from sensormesh_core.errors import NotFound, ResourceExhausted
from sensormesh_core.storage import live_signal
from sensormesh_core.storage.listener import Listener
from sensormesh_core.storage.live_signal import CommitSignal

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Subscriber(Protocol):
    """What the hub needs of a subscriber (readings' subscription.py, frames' frame_subscription.py)."""

    device_id: str
    skip_through: int

    def offer(self, items: Any) -> None: ...
    def report_missed(self, count: int) -> None: ...
    def close(self) -> None: ...
    def end(self, error: Exception) -> None: ...


@dataclass(eq=False)
class _Watched:
    """A device with subscribers in this process."""

    subscriptions: set[Subscriber] = field(default_factory=set)
    order: DeviceOrder = field(default_factory=DeviceOrder)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a signal or the first mark came
    worker: asyncio.Task[None] | None = None


class LiveHub:
    """Subscriptions of this process, fed from PostgreSQL notifications."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Connect,
        *,
        max_subscribers: int,
        queue_size: int,
        order_wait: float = 2.0,
        source: LiveSource | None = None,
    ) -> None:
        """`source`: what the hub feeds from; readings by default."""
        self._source: LiveSource = source or ReadingsSource()
        self._pool = pool
        self._connect = connect
        self._max_subscribers = max_subscribers
        self._queue_size = queue_size
        self._order_wait = order_wait
        self._devices: dict[str, _Watched] = {}
        self._listener = Listener(
            connect, self._source.channel, self._on_notify, on_reconnect=self._report_gaps
        )
        self.signals_received = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(w.subscriptions) for w in self._devices.values())

    @property
    def busy(self) -> bool:
        """Whether signals are being read back or wait to be (tests and shutdown wait on it)."""
        return any(w.worker is not None or w.order.pending for w in self._devices.values())

    @property
    def listening(self) -> bool:
        return self._listener.connected.is_set()

    async def start(self) -> None:
        """Connect and LISTEN; keeps reconnecting in the background afterwards."""
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        for watched in self._devices.values():
            if watched.worker is not None:
                watched.worker.cancel()
            for sub in watched.subscriptions:
                sub.close()

    def subscribe(self, sub: Subscriber) -> None:
        """Register `sub`; raises ResourceExhausted over the process's limit.

        Then call `start_from` with the device's committed sequence, read after
        this call: commits after that mark reach `sub`.
        """
        if self.subscriber_count >= self._max_subscribers:
            raise ResourceExhausted(
                f"this query process serves its maximum of {self._max_subscribers} live feeds; "
                "retry later or through another replica"
            )
        self._devices.setdefault(sub.device_id, _Watched()).subscriptions.add(sub)

    def start_from(self, sub: Subscriber, committed: int) -> None:
        """`sub` is owed every reading numbered above `committed`."""
        sub.skip_through = committed
        watched = self._devices.get(sub.device_id)
        if watched is not None and sub in watched.subscriptions:
            watched.order.start_from(committed)
            watched.arrived.set()

    def unsubscribe(self, sub: Subscriber) -> None:
        watched = self._devices.get(sub.device_id)
        if watched is not None:
            watched.subscriptions.discard(sub)
            if not watched.subscriptions:
                self._forget(sub.device_id)

    def _forget(self, device_id: str) -> None:
        """Stop tracking the device; its worker sees it and ends after its current read."""
        watched = self._devices.pop(device_id, None)
        if watched is not None:
            watched.arrived.set()

    async def _report_gaps(self) -> None:
        """After a reconnect: tell subscribers how many sequence numbers they may have missed."""
        devices = [d for d, w in self._devices.items() if w.order.delivered is not None]
        if not devices:
            return
        async with self._pool.acquire() as conn:
            marks = await self._source.marks(conn, devices)
        for device_id in devices:
            watched = self._devices.get(device_id)
            if watched is None:
                continue
            committed = marks.get(device_id)
            delivered = watched.order.delivered or 0
            if committed is None or committed < delivered:  # deleted (and maybe registered again)
                self._end_device(device_id)
                continue
            gap = watched.order.skip_to(committed)
            if gap > 0:
                for sub in watched.subscriptions:
                    sub.report_missed(gap)
                log.warning("event=live_gap_reported device_id=%s sequences=%d", device_id, gap)

    def _end_device(self, device_id: str) -> None:
        """The device was deleted: its feeds end with NOT_FOUND."""
        watched = self._devices.get(device_id)
        if watched is None:
            return
        for sub in watched.subscriptions:
            sub.end(NotFound(f"device {device_id!r} was deleted"))
        self._forget(device_id)
        log.info(
            "event=live_device_deleted device_id=%s feeds_ended=%d", device_id, len(watched.subscriptions)
        )

    def _on_notify(self, payload: str) -> None:
        self.signals_received += 1
        try:
            message = live_signal.decode(payload)
        except ValueError:
            log.warning("event=live_signal_malformed payload=%r", payload[:200])
            return
        watched = self._devices.get(message.device_id)
        if watched is None:
            return
        if not isinstance(message, CommitSignal):
            self._end_device(message.device_id)
            return
        watched.order.add(message)
        watched.arrived.set()
        if watched.worker is None:
            watched.worker = asyncio.create_task(
                self._drain(message.device_id, watched), name=f"live-{message.device_id}"
            )

    async def _drain(self, device_id: str, watched: _Watched) -> None:
        """Deliver the device's signals in sequence order until none wait."""
        loop = asyncio.get_running_loop()
        try:
            while self._devices.get(device_id) is watched:
                step = watched.order.next(loop.time(), self._order_wait)
                if step is None:
                    return
                if isinstance(step, Hold):
                    watched.arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watched.arrived.wait(), step.seconds)
                    continue
                if step.missed:
                    log.warning(
                        "event=live_signal_missing device_id=%s sequences=%d-%d waited_s=%.1f",
                        device_id,
                        step.signal.first_sequence - step.missed,
                        step.signal.first_sequence - 1,
                        self._order_wait,
                    )
                    for sub in watched.subscriptions:
                        sub.report_missed(step.missed)
                if step.signal.has_rows:
                    await self._deliver(watched, step.signal)
        finally:
            watched.worker = None

    async def _deliver(self, watched: _Watched, signal: CommitSignal) -> None:
        try:
            async with self._pool.acquire() as conn:
                readings = await self._source.read(conn, signal)
        except (OSError, asyncpg.PostgresError) as exc:
            log.error(
                "event=live_read_failed device_id=%s sequences=%d-%d error=%r",
                signal.device_id,
                signal.first_sequence,
                signal.last_sequence,
                exc,
            )
            for sub in watched.subscriptions:
                sub.report_missed(signal.last_sequence - signal.first_sequence + 1)
            return
        for sub in list(watched.subscriptions):
            sub.offer(readings)
