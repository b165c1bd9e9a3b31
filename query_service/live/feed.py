"""One WatchReadings stream: optional replay, then the live part, heartbeats.

The subscription is registered before anything is read, so nothing committed
after the feed starts can be missed. The device's committed sequence M is
read next (NOT_FOUND if the device is gone): every reading numbered at or
below M is committed already, and the live part skips them; only then are
the response headers sent, so a client that has them knows every later
commit reaches it. With a start time, readings at or below M are replayed
from the tables first (sample time >= start). Since a device's batches
commit in sequence order (the exactly-once mark), replay and live part meet
without a gap and without a duplicate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
from sensormesh.v1 import query_pb2

from query_service.live.hub import LiveHub
from query_service.live.subscription import Subscription
from query_service.storage.live_rows import FAR_FUTURE, Window, replay_chunk
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.schema import TYPED_TABLES

REPLAY_CHUNK = 1_000


async def _committed(pool: asyncpg.Pool, device_id: str) -> int:
    async with pool.acquire() as conn:
        committed = await conn.fetchval(
            "SELECT committed_sequence FROM upload_offsets WHERE device_id = $1", device_id
        )
    if committed is None:
        raise NotFound(f"device {device_id!r} does not exist")
    return int(committed)


async def _replay(
    pool: asyncpg.Pool, sub: Subscription, start: datetime
) -> AsyncIterator[query_pb2.WatchReadingsResponse]:
    if not sub.skip_through:
        return
    window = Window(sub.device_id, start, FAR_FUTURE, 1, sub.skip_through)
    for table in (*TYPED_TABLES, None):
        after = None
        while True:
            async with pool.acquire() as conn:
                chunk = await replay_chunk(conn, window, table, after, REPLAY_CHUNK)
            wanted = [r.reading for r in chunk if _matches(sub, r.sensor, r.quantities)]
            if wanted:
                yield query_pb2.WatchReadingsResponse(readings=wanted)
            if len(chunk) < REPLAY_CHUNK:
                break
            after = (chunk[-1].time, chunk[-1].sequence)


def _matches(sub: Subscription, sensor: str, quantities: frozenset[str]) -> bool:
    if sub.sensors and sensor not in sub.sensors:
        return False
    return not sub.quantities or not sub.quantities.isdisjoint(quantities)


async def watch(
    hub: LiveHub,
    pool: asyncpg.Pool,
    sub: Subscription,
    *,
    replay_from: datetime | None,
    heartbeat: timedelta,
    on_subscribed: Callable[[], Awaitable[None]],
) -> AsyncIterator[query_pb2.WatchReadingsResponse]:
    """The feed's messages until the client goes away or the hub stops.

    `on_subscribed` runs once the subscription is registered (the servicer
    sends the response headers then, so a client knows the feed is live).
    """
    hub.subscribe(sub)
    try:
        hub.start_from(sub, await _committed(pool, sub.device_id))
        await on_subscribed()
        if replay_from is not None:
            async for message in _replay(pool, sub, replay_from):
                yield message
        while True:
            delivery = await sub.next(heartbeat.total_seconds())
            if delivery is None:
                yield query_pb2.WatchReadingsResponse()
            else:
                yield query_pb2.WatchReadingsResponse(
                    readings=delivery.readings, missed_count=delivery.missed_count
                )
    finally:
        hub.unsubscribe(sub)
