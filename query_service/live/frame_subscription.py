"""One WatchFrames subscriber: its camera filter and its bounded queue.

The readings' rules (live_queue.py), for frames: the hub offers every committed frame without
waiting; each frame is one queue entry; when the queue is full the oldest frame is dropped and
counted, and the next message carries the count as `missed_count`. A slow live view costs
bounded memory, never delays ingest or other subscribers, and continues with the newest frames,
which is what a live view wants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from query_service.live.live_queue import LiveQueue
from query_service.live.sources import LiveFrame


@dataclass(frozen=True, slots=True)
class FrameDelivery:
    frames: list[LiveFrame]
    missed_count: int


class FrameSubscription(LiveQueue[LiveFrame]):
    """A subscriber's cameras, de-duplication mark and queue of frames."""

    def __init__(
        self, device_id: str, cameras: Iterable[str] = (), queue_size: int = 64, *, include_data: bool = False
    ) -> None:
        super().__init__(queue_size, lambda _: 1)
        self.device_id = device_id
        self.cameras = frozenset(cameras)
        self.include_data = include_data
        # Frames numbered at or below this were committed before the feed started: skip them live.
        self.skip_through = 0
        self.delivered_count = 0

    def wants(self, frame: LiveFrame) -> bool:
        return frame.sequence > self.skip_through and (not self.cameras or frame.camera in self.cameras)

    def offer(self, frames: list[LiveFrame]) -> None:
        """Queue the wanted frames of one commit; never blocks."""
        if self.closed:
            return
        for frame in frames:
            if self.wants(frame):
                self.push(frame)

    async def next(self, idle_seconds: float, most: int) -> FrameDelivery | None:
        """Up to `most` queued frames (and what was missed), or None after `idle_seconds` of nothing."""
        taken = await self.take(idle_seconds, most)
        if taken is None:
            return None
        frames, missed = taken
        self.delivered_count += len(frames)
        return FrameDelivery(frames, missed)
