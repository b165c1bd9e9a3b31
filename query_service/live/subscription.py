"""One WatchReadings subscriber: its filter and its bounded queue (live_queue.py: a committed
batch is one entry; when the queue is full the oldest batch is dropped and its readings counted
in the next message's `missed_count`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sensormesh.v1 import reading_pb2

from query_service.live.live_queue import LiveQueue
from query_service.storage.live_rows import LiveReading

# Readings per message: keeps a message of IMU readings well under gRPC's 4 MB.
MAX_READINGS_PER_MESSAGE = 2_000


@dataclass(frozen=True, slots=True)
class Delivery:
    readings: list[reading_pb2.Reading]
    missed_count: int


class Subscription(LiveQueue[list[LiveReading]]):
    """A subscriber's filter, de-duplication mark and queue."""

    def __init__(
        self,
        device_id: str,
        sensors: Iterable[str] = (),
        quantities: Iterable[str] = (),
        queue_size: int = 256,
    ) -> None:
        super().__init__(queue_size, len)
        self.device_id = device_id
        self.sensors = frozenset(sensors)
        self.quantities = frozenset(quantities)
        # Readings numbered at or below this were committed before the feed started
        # (replayed, or not owed): skip them live.
        self.skip_through = 0
        self.delivered_count = 0

    def wants(self, reading: LiveReading) -> bool:
        if reading.sequence <= self.skip_through:
            return False
        if self.sensors and reading.sensor not in self.sensors:
            return False
        return not self.quantities or not self.quantities.isdisjoint(reading.quantities)

    def offer(self, readings: list[LiveReading]) -> None:
        """Queue the wanted readings of one committed batch; never blocks."""
        if self.closed:
            return
        wanted = [r for r in readings if self.wants(r)]
        for start in range(0, len(wanted), MAX_READINGS_PER_MESSAGE):
            self.push(wanted[start : start + MAX_READINGS_PER_MESSAGE])

    async def next(self, idle_seconds: float) -> Delivery | None:
        """The next message, or None after `idle_seconds` with nothing to send."""
        while (taken := await self.take(idle_seconds, 1)) is not None:
            entries, missed = taken
            # Filtered again: the feed may have raised `skip_through` since the batch was queued.
            batch = [r for r in entries[0] if self.wants(r)] if entries else []
            if batch or missed:
                self.delivered_count += len(batch)
                return Delivery([r.reading for r in batch], missed)
        return None
