"""One WatchReadings subscriber: its filter and its bounded queue.

The hub offers every committed batch to every subscription of the device
without ever waiting: a batch is one queue entry; when the queue is full the
oldest entry is dropped and its readings are counted, and the next message
the subscriber receives carries that count as `missed_count`. A slow
subscriber therefore costs a bounded amount of memory, never delays ingest,
the hub or other subscribers, and is never cut off for being slow: it
continues with the newest readings. (A subscriber that stops reading
entirely is closed by gRPC keepalive or the connection's maximum age.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from sensormesh.v1 import reading_pb2

from query_service.storage.live_rows import LiveReading

# Readings per message: keeps a message of IMU readings well under gRPC's 4 MB.
MAX_READINGS_PER_MESSAGE = 2_000


class SubscriptionClosed(Exception):
    """The hub stopped (server shutdown); the feed ends and the client reconnects."""


@dataclass(frozen=True, slots=True)
class Delivery:
    readings: list[reading_pb2.Reading]
    missed_count: int


class Subscription:
    """A subscriber's filter, de-duplication mark and queue."""

    def __init__(
        self,
        device_id: str,
        sensors: Iterable[str] = (),
        quantities: Iterable[str] = (),
        queue_size: int = 256,
    ) -> None:
        self.device_id = device_id
        self.sensors = frozenset(sensors)
        self.quantities = frozenset(quantities)
        self._queue: deque[list[LiveReading]] = deque()
        self._queue_size = queue_size
        self._missed = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._error: Exception | None = None
        # Readings numbered at or below this were committed before the feed started
        # (replayed, or not owed): skip them live.
        self.skip_through = 0
        self.delivered_count = 0
        self.missed_total = 0

    def wants(self, reading: LiveReading) -> bool:
        if reading.sequence <= self.skip_through:
            return False
        if self.sensors and reading.sensor not in self.sensors:
            return False
        return not self.quantities or not self.quantities.isdisjoint(reading.quantities)

    def offer(self, readings: list[LiveReading]) -> None:
        """Queue the wanted readings of one committed batch; never blocks."""
        if self._closed:
            return
        wanted = [r for r in readings if self.wants(r)]
        for start in range(0, len(wanted), MAX_READINGS_PER_MESSAGE):
            if len(self._queue) >= self._queue_size:
                dropped = len(self._queue.popleft())
                self._missed += dropped
                self.missed_total += dropped
            self._queue.append(wanted[start : start + MAX_READINGS_PER_MESSAGE])
        if wanted:
            self._ready.set()

    def report_missed(self, count: int) -> None:
        """Readings lost outside the queue (the hub lost its LISTEN connection)."""
        if count > 0:
            self._missed += count
            self.missed_total += count
            self._ready.set()

    def close(self) -> None:
        """End the feed because the process stops: `next` raises SubscriptionClosed."""
        self._closed = True
        self._ready.set()

    def end(self, error: Exception) -> None:
        """End the feed with `error` (the device was deleted): `next` raises it, queued readings are dropped."""
        self._error = error
        self.close()

    async def next(self, idle_seconds: float) -> Delivery | None:
        """The next message, or None after `idle_seconds` with nothing to send."""
        while True:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise SubscriptionClosed
            if self._queue or self._missed:
                batch = [r for r in self._queue.popleft() if self.wants(r)] if self._queue else []
                missed, self._missed = self._missed, 0
                if not self._queue:
                    self._ready.clear()
                if batch or missed:
                    self.delivered_count += len(batch)
                    return Delivery([r.reading for r in batch], missed)
                continue
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), idle_seconds)
            except TimeoutError:
                return None
