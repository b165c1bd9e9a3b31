"""One WatchFrames subscriber: its camera filter and its bounded queue.

The readings' rules (subscription.py), for frames: the hub offers every
committed frame without waiting; each frame is one queue entry; when the
queue is full the oldest frame is dropped and counted, and the next message
carries the count as `missed_count`. A slow live view costs bounded memory,
never delays ingest or other subscribers, and continues with the newest
frames, which is what a live view wants.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from query_service.live.sources import LiveFrame
from query_service.live.subscription import SubscriptionClosed


@dataclass(frozen=True, slots=True)
class FrameDelivery:
    frames: list[LiveFrame]
    missed_count: int


class FrameSubscription:
    """A subscriber's cameras, de-duplication mark and queue of frames."""

    def __init__(
        self, device_id: str, cameras: Iterable[str] = (), queue_size: int = 64, *, include_data: bool = False
    ) -> None:
        self.device_id = device_id
        self.cameras = frozenset(cameras)
        self.include_data = include_data
        self._queue: deque[LiveFrame] = deque()
        self._queue_size = queue_size
        self._missed = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._error: Exception | None = None
        # Frames numbered at or below this were committed before the feed started: skip them live.
        self.skip_through = 0
        self.delivered_count = 0
        self.missed_total = 0

    def wants(self, frame: LiveFrame) -> bool:
        return frame.sequence > self.skip_through and (not self.cameras or frame.camera in self.cameras)

    def offer(self, frames: list[LiveFrame]) -> None:
        """Queue the wanted frames of one commit; never blocks."""
        if self._closed:
            return
        wanted = [f for f in frames if self.wants(f)]
        for frame in wanted:
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self._missed += 1
                self.missed_total += 1
            self._queue.append(frame)
        if wanted:
            self._ready.set()

    def report_missed(self, count: int) -> None:
        """Frames lost outside the queue (the hub lost its LISTEN connection)."""
        if count > 0:
            self._missed += count
            self.missed_total += count
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def end(self, error: Exception) -> None:
        self._error = error
        self.close()

    async def next(self, idle_seconds: float, most: int) -> FrameDelivery | None:
        """Up to `most` queued frames (and what was missed), or None after `idle_seconds` of nothing."""
        while True:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise SubscriptionClosed
            if self._queue or self._missed:
                frames = [self._queue.popleft() for _ in range(min(most, len(self._queue)))]
                missed, self._missed = self._missed, 0
                if not self._queue:
                    self._ready.clear()
                self.delivered_count += len(frames)
                return FrameDelivery(frames, missed)
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), idle_seconds)
            except TimeoutError:
                return None
