"""One WatchFrames stream: optional replay, then the live part, heartbeats.

The readings' order (feed.py): the subscription is registered first, then
the device's frame mark M is read (NOT_FOUND if the device is gone), then
the response headers go out; a replay sends the stored frames captured
since the start time and numbered up to M, and the live part skips what is
at or below M, so replay and live meet without a gap or a duplicate.

With `include_data` each frame's image is read from the frame store as it
is sent, and every message carries one frame, so a message stays within
gRPC's limits whatever the images' sizes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from sensormesh.v1 import frame_pb2

from query_service.live.frame_subscription import FrameSubscription
from query_service.live.hub import LiveHub
from query_service.live.sources import LiveFrame, live_frame
from query_service.storage.frames import frame_marks, frames_between
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.frame_blobs import FrameBlobStore

REPLAY_CHUNK = 100
METADATA_PER_MESSAGE = 100
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


async def _committed(pool: asyncpg.Pool, device_id: str) -> int:
    async with pool.acquire() as conn:
        marks = await frame_marks(conn, [device_id])
    if device_id not in marks:
        raise NotFound(f"device {device_id!r} does not exist")
    return marks[device_id]


async def _replay(pool: asyncpg.Pool, sub: FrameSubscription, start: datetime) -> AsyncIterator[LiveFrame]:
    after = None
    while sub.skip_through:
        async with pool.acquire() as conn:
            chunk = await frames_between(
                conn,
                sub.device_id,
                start,
                FAR_FUTURE,
                sorted(sub.cameras),
                after=after,
                limit=REPLAY_CHUNK,
                through_sequence=sub.skip_through,
            )
        for stored in chunk:
            yield live_frame(stored)
        if len(chunk) < REPLAY_CHUNK:
            return
        after = (chunk[-1].row.time, chunk[-1].row.sequence)


class FrameFeed:
    """Builds a feed's messages; holds the store the images come from."""

    def __init__(self, hub: LiveHub, pool: asyncpg.Pool, blobs: FrameBlobStore) -> None:
        self._hub = hub
        self._pool = pool
        self._blobs = blobs

    async def _messages(
        self, sub: FrameSubscription, frames: list[LiveFrame], missed: int = 0
    ) -> AsyncIterator[frame_pb2.WatchFramesResponse]:
        if not sub.include_data:
            for start in range(0, max(len(frames), 1), METADATA_PER_MESSAGE):
                chunk = frames[start : start + METADATA_PER_MESSAGE]
                yield frame_pb2.WatchFramesResponse(
                    frames=[f.message for f in chunk], missed_count=missed if start == 0 else 0
                )
            return
        if not frames:
            yield frame_pb2.WatchFramesResponse(missed_count=missed)
        for index, frame in enumerate(frames):
            message = frame_pb2.Frame()
            message.CopyFrom(frame.message)
            async with self._pool.acquire() as conn:
                data = await self._blobs.get(conn, frame.stored.row.key)
            if data is not None:  # gone meanwhile (retention, deletion): metadata alone
                message.data = data
            yield frame_pb2.WatchFramesResponse(frames=[message], missed_count=missed if index == 0 else 0)

    async def watch(
        self,
        sub: FrameSubscription,
        *,
        replay_from: datetime | None,
        heartbeat: timedelta,
        on_subscribed: Callable[[], Awaitable[None]],
    ) -> AsyncIterator[frame_pb2.WatchFramesResponse]:
        """The feed's messages until the client goes away or the hub stops."""
        self._hub.subscribe(sub)
        try:
            self._hub.start_from(sub, await _committed(self._pool, sub.device_id))
            await on_subscribed()
            if replay_from is not None:
                chunk: list[LiveFrame] = []
                async for frame in _replay(self._pool, sub, replay_from):
                    chunk.append(frame)
                    if len(chunk) >= METADATA_PER_MESSAGE:
                        async for message in self._messages(sub, chunk):
                            yield message
                        chunk = []
                if chunk:
                    async for message in self._messages(sub, chunk):
                        yield message
            while True:
                delivery = await sub.next(heartbeat.total_seconds(), METADATA_PER_MESSAGE)
                if delivery is None:
                    yield frame_pb2.WatchFramesResponse()
                    continue
                async for message in self._messages(sub, delivery.frames, delivery.missed_count):
                    yield message
        finally:
            self._hub.unsubscribe(sub)
