"""Frame metadata read back: pages by capture time, one frame by number or the newest, and the
frames a commit signal names (live feeds).

Every read goes through an index of `frames` with the device first: (device,
capture time) for ranges, with the capture time pruning chunks or
partitions, and (device, sequence) for a frame by number. "The newest frame"
is read from `cameras`, which ingest keeps current, so it scans no frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from sensormesh_core.storage.frames import SELECT_FRAME, StoredFrame


async def frames_between(
    conn: asyncpg.Connection,
    device_id: str,
    start: datetime,
    end: datetime,
    cameras: Sequence[str],
    *,
    after: tuple[datetime, int] | None,
    limit: int,
    through_sequence: int | None = None,
) -> list[StoredFrame]:
    """Up to `limit` frames captured in [start, end), in (capture time, sequence) order, after
    the cursor `after`; only `cameras` unless empty; only numbered up to `through_sequence`."""
    after_time, after_sequence = after if after is not None else (None, None)
    rows = await conn.fetch(
        f"{SELECT_FRAME} WHERE device_id = $1 AND time >= $2 AND time < $3 "
        "AND (cardinality($4::text[]) = 0 OR camera = ANY($4::text[])) "
        "AND ($5::timestamptz IS NULL OR (time, sequence) > ($5, $6::bigint)) "
        "AND ($8::bigint IS NULL OR sequence <= $8) "
        "ORDER BY time, sequence LIMIT $7",
        device_id,
        start,
        end,
        list(cameras),
        after_time,
        after_sequence,
        limit,
        through_sequence,
    )
    return [StoredFrame.from_record(row) for row in rows]


async def frame_by_sequence(conn: asyncpg.Connection, device_id: str, sequence: int) -> StoredFrame | None:
    row = await conn.fetchrow(f"{SELECT_FRAME} WHERE device_id = $1 AND sequence = $2", device_id, sequence)
    return None if row is None else StoredFrame.from_record(row)


async def newest_frame(conn: asyncpg.Connection, device_id: str, camera: str) -> StoredFrame | None:
    """The newest frame of `camera` (empty: of any camera) by capture time."""
    newest = await conn.fetchrow(
        "SELECT last_sequence, last_capture_time FROM cameras WHERE device_id = $1 AND ($2 = '' OR name = $2) "
        "ORDER BY last_capture_time DESC, last_sequence DESC LIMIT 1",
        device_id,
        camera,
    )
    if newest is None:
        return None
    row = await conn.fetchrow(
        f"{SELECT_FRAME} WHERE device_id = $1 AND sequence = $2 AND time = $3",
        device_id,
        newest["last_sequence"],
        newest["last_capture_time"],
    )
    return None if row is None else StoredFrame.from_record(row)


async def committed_frames(
    conn: asyncpg.Connection, device_id: str, first: int, last: int, start: datetime, end: datetime
) -> list[StoredFrame]:
    """The frames numbered first..last captured in [start, end] (a commit signal's ranges), in
    sequence order."""
    rows = await conn.fetch(
        f"{SELECT_FRAME} WHERE device_id = $1 AND sequence BETWEEN $2 AND $3 AND time BETWEEN $4 AND $5 "
        "ORDER BY sequence",
        device_id,
        first,
        last,
        start,
        end,
    )
    return [StoredFrame.from_record(row) for row in rows]


async def frame_marks(conn: asyncpg.Connection, device_ids: list[str]) -> dict[str, int]:
    """The frame mark of each device that exists (0 before its first frame); deleted ones are absent."""
    rows = await conn.fetch(
        "SELECT d.device_id, coalesce(o.committed_sequence, 0) AS committed_sequence FROM devices d "
        "LEFT JOIN frame_offsets o ON o.device_id = d.device_id WHERE d.device_id = ANY($1::text[])",
        device_ids,
    )
    return {row["device_id"]: int(row["committed_sequence"]) for row in rows}
