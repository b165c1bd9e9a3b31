"""FrameService: a device's camera frames listed, fetched as images, and watched live."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import frame_pb2, frame_pb2_grpc

from query_service.live.frame_feed import FrameFeed
from query_service.live.frame_subscription import FrameSubscription
from query_service.live.hub import LiveHub
from query_service.live.live_queue import SubscriptionClosed
from query_service.live.sources import frame_message
from query_service.request_checks import replay_violations, time_range, to_datetime, validate_with
from query_service.settings import QuerySettings
from query_service.storage.frames import frame_by_sequence, frames_between, newest_frame
from sensormesh_core import page_tokens
from sensormesh_core.access.principal import current_caller
from sensormesh_core.errors import NotFound, Unavailable
from sensormesh_core.storage.frame_blobs import FrameBlobStore
from sensormesh_core.storage.frames import StoredFrame
from sensormesh_core.storage.registry import require_visible

log = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
DEFAULT_PAGE_SIZE = 100


class FrameServicer(frame_pb2_grpc.FrameServiceServicer):
    """Validates, reads through one storage function, maps to the contract."""

    def __init__(
        self, pool: asyncpg.Pool, hub: LiveHub, blobs: FrameBlobStore, settings: QuerySettings
    ) -> None:
        self._pool = pool
        self._hub = hub
        self._blobs = blobs
        self._settings = settings
        self._feed = FrameFeed(hub, pool, blobs)

    async def ListFrames(
        self, request: frame_pb2.ListFramesRequest, context: Context
    ) -> frame_pb2.ListFramesResponse:
        validate_with(request, list)
        given_start = request.start_time if request.HasField("start_time") else None
        given_end = request.end_time if request.HasField("end_time") else None
        parameters = {
            "device": request.device_id,
            "start": _micros(to_datetime(given_start)) if given_start is not None else None,
            "end": _micros(to_datetime(given_end)) if given_end is not None else None,
            "cameras": sorted(request.cameras),
        }
        after = None
        if request.page_token:  # later pages keep the range the first one resolved ("now" moves)
            start, end, after = _cursor(request.page_token, parameters)
        else:
            start, end = time_range(given_start, given_end, self._settings.default_range, datetime.now(UTC))
        size = request.page_size or DEFAULT_PAGE_SIZE
        async with self._pool.acquire() as conn:
            await require_visible(conn, request.device_id, current_caller().scope)
            stored = await frames_between(
                conn, request.device_id, start, end, request.cameras, after=after, limit=size + 1
            )
        response = frame_pb2.ListFramesResponse(frames=[frame_message(f) for f in stored[:size]])
        if len(stored) > size:
            last = stored[size - 1].row
            cursor = {
                "start": _micros(start),
                "end": _micros(end),
                "time": _micros(last.time),
                "sequence": last.sequence,
            }
            response.next_page_token = page_tokens.encode("frames", parameters, cursor)
        return response

    async def GetFrame(
        self, request: frame_pb2.GetFrameRequest, context: Context
    ) -> frame_pb2.GetFrameResponse:
        validate_with(request, list)
        async with self._pool.acquire() as conn:
            await require_visible(conn, request.device_id, current_caller().scope)
            stored = await self._find(conn, request)
            data = await self._blobs.get(conn, stored.row.key)
        if data is None:
            raise NotFound(f"the image of frame {stored.row.sequence} of {request.device_id!r} is gone")
        response = frame_pb2.GetFrameResponse(frame=frame_message(stored))
        response.image.content_type = stored.row.content_type
        response.image.data = data
        return response

    async def _find(self, conn: asyncpg.Connection, request: frame_pb2.GetFrameRequest) -> StoredFrame:
        device, camera = request.device_id, request.camera
        if request.sequence == 0:
            stored = await newest_frame(conn, device, camera)
            if stored is None:
                of = f"camera {camera!r} of " if camera else ""
                raise NotFound(f"no frame of {of}device {device!r} is stored")
            return stored
        stored = await frame_by_sequence(conn, device, request.sequence)
        if stored is None or (camera and stored.row.camera != camera):
            raise NotFound(
                f"frame {request.sequence} of device {device!r}{f' and camera {camera!r}' if camera else ''} "
                "does not exist (or is past the frames' retention)"
            )
        return stored

    async def WatchFrames(
        self, request: frame_pb2.WatchFramesRequest, context: Context
    ) -> AsyncIterator[frame_pb2.WatchFramesResponse]:
        start = request.start_time if request.HasField("start_time") else None
        validate_with(
            request, lambda: replay_violations(start, self._settings.replay_max_age, datetime.now(UTC))
        )
        async with self._pool.acquire() as conn:
            await require_visible(conn, request.device_id, current_caller().scope)
        sub = FrameSubscription(
            request.device_id,
            request.cameras,
            self._settings.frame_subscriber_queue_size,
            include_data=request.include_data,
        )
        log.info("event=watch_frames_started device_id=%s replay=%s", request.device_id, start is not None)
        try:
            async for message in self._feed.watch(
                sub,
                replay_from=to_datetime(start) if start is not None else None,
                heartbeat=self._settings.heartbeat_interval,
                on_subscribed=lambda: context.send_initial_metadata(()),
            ):
                yield message
        except SubscriptionClosed:
            raise Unavailable("the query service is shutting down; reconnect") from None
        finally:
            log.info(
                "event=watch_frames_ended device_id=%s delivered=%d missed=%d",
                request.device_id,
                sub.delivered_count,
                sub.missed_total,
            )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _cursor(token: str, parameters: dict[str, Any]) -> tuple[datetime, datetime, tuple[datetime, int]]:
    """The range a ListFrames page token's first page resolved, and the (capture time, sequence)
    it continues after."""
    cursor = page_tokens.decode(token, "frames", parameters)
    values = [cursor.get(name) for name in ("start", "end", "time", "sequence")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise page_tokens.invalid()
    start, end, at, sequence = (int(v) for v in values)  # type: ignore[arg-type]
    try:
        moments = [_EPOCH + timedelta(microseconds=v) for v in (start, end, at)]
    except OverflowError:
        raise page_tokens.invalid() from None
    return moments[0], moments[1], (moments[2], sequence)
