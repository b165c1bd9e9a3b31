"""What every live subscriber's queue shares, readings' (subscription.py) and frames'
(frame_subscription.py): bounded, never blocking the hub, and honest about what it dropped.

The hub offers what was committed without ever waiting. When the queue is full its oldest entry
is dropped and counted, and the next message the subscriber receives carries that count as
`missed_count`, so a slow subscriber costs bounded memory, never delays ingest, the hub or other
subscribers, and is never cut off for being slow: it continues with the newest entries. (One
that stops reading entirely is closed by gRPC keepalive or the connection's maximum age.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class SubscriptionClosed(Exception):
    """The hub stopped (server shutdown); the feed ends and the client reconnects."""


class LiveQueue(Generic[Entry]):
    """A subscriber's queue of at most `size` entries, what it missed, and how it ended.

    `weigh` counts the items an entry holds (readings in a batch, or one frame): what is missed
    when it is dropped."""

    def __init__(self, size: int, weigh: Callable[[Entry], int]) -> None:
        self._entries: deque[Entry] = deque()
        self._size = size
        self._weigh = weigh
        self._missed = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._error: Exception | None = None
        self.missed_total = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, entry: Entry) -> None:
        """Queue `entry`, dropping (and counting) the oldest when full; never blocks."""
        if len(self._entries) >= self._size:
            self._count_missed(self._weigh(self._entries.popleft()))
        self._entries.append(entry)
        self._ready.set()

    def report_missed(self, count: int) -> None:
        """Items lost outside the queue (the hub lost its LISTEN connection, a signal never came)."""
        if count > 0:
            self._count_missed(count)
            self._ready.set()

    def close(self) -> None:
        """End the feed because the process stops: `take` raises SubscriptionClosed."""
        self._closed = True
        self._ready.set()

    def end(self, error: Exception) -> None:
        """End the feed with `error` (the device was deleted): `take` raises it, queued entries are dropped."""
        self._error = error
        self.close()

    async def take(self, idle_seconds: float, most: int) -> tuple[list[Entry], int] | None:
        """Up to `most` queued entries and what was missed since the last take (at least one of
        the two), or None after `idle_seconds` with neither."""
        while True:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise SubscriptionClosed
            if self._entries or self._missed:
                entries = [self._entries.popleft() for _ in range(min(most, len(self._entries)))]
                missed, self._missed = self._missed, 0
                if not self._entries:
                    self._ready.clear()
                return entries, missed
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), idle_seconds)
            except TimeoutError:
                return None

    def _count_missed(self, count: int) -> None:
        self._missed += count
        self.missed_total += count
