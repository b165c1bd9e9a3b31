"""The frame batch transaction: frames, images and the device's frame mark, committed together.

One transaction per batch, on a pooled connection, shaped like the readings'
(ingest_service/writer.py) but on the frames' own mark row, so a frame
commit never waits for a readings commit of the same device:

1. lock the device's `frame_offsets` row (FOR UPDATE): batches of one device
   commit one at a time, whichever stream or replica they came from (the
   device's first frame batch creates the row, at 0);
2. read the mark and cut the batch there (`frame_batch.trim`);
3. COPY the metadata rows into `frames` and hand the images to the frame
   store, on this transaction (sensormesh_core/storage/frame_blobs.py);
4. in one statement: each camera's newest frame (newest capture wins, so a
   late backlog never replaces a newer frame), the thinning reports (once),
   and the mark moved to the batch's last sequence; commit.

Partitions (plain PostgreSQL) are created before, in their own transaction,
as for readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ingest_service.frame_batch import AcceptedFrame, PreparedFrames, RefusedFrame, TrimmedFrames, trim
from sensormesh_core.errors import NotFound, PermissionDenied
from sensormesh_core.storage.frame_blobs import FrameBlobStore
from sensormesh_core.storage.frames import insert_frames
from sensormesh_core.storage.live_signal import CommitSignal
from sensormesh_core.storage.partitions import PartitionManager
from sensormesh_core.storage.registry import DEVICE_STATUS_ACTIVE

_LOCK_OFFSET = (
    "SELECT o.committed_sequence, d.status FROM frame_offsets o "
    "JOIN devices d ON d.device_id = o.device_id WHERE o.device_id = $1 FOR UPDATE OF o"
)
_CREATE_OFFSET = (
    "INSERT INTO frame_offsets (device_id) SELECT device_id FROM devices WHERE device_id = $1 "
    "ON CONFLICT (device_id) DO NOTHING"
)
_RECORD_BATCH = """
WITH newest AS (
  INSERT INTO cameras (device_id, name, last_sequence, last_capture_time)
  SELECT $1, c.name, c.sequence, c.time
  FROM unnest($3::text[], $4::bigint[], $5::timestamptz[]) AS c(name, sequence, time)
  ON CONFLICT (device_id, name) DO UPDATE
    SET last_sequence = EXCLUDED.last_sequence, last_capture_time = EXCLUDED.last_capture_time
    WHERE (cameras.last_capture_time, cameras.last_sequence)
          <= (EXCLUDED.last_capture_time, EXCLUDED.last_sequence)
), thinned AS (
  INSERT INTO frame_thinning_reports
    (device_id, camera, count, first_capture_time, last_capture_time, batch_last_sequence)
  SELECT $1, t.camera, t.count, t.first_time, t.last_time, $10
  FROM unnest($6::text[], $7::bigint[], $8::timestamptz[], $9::timestamptz[])
    AS t(camera, count, first_time, last_time)
  WHERE NOT EXISTS (
    SELECT 1 FROM frame_thinning_reports r
    WHERE r.device_id = $1 AND r.camera = t.camera AND r.count = t.count
      AND r.first_capture_time = t.first_time AND r.last_capture_time = t.last_time
  )
)
UPDATE frame_offsets SET committed_sequence = $2, update_time = now()
WHERE device_id = $1 AND committed_sequence < $2
"""


@dataclass(frozen=True, slots=True)
class FrameCommit:
    """The outcome of one frame batch."""

    mark: int  # the device's frame mark after the transaction
    accepted: int
    duplicates: int
    refused: list[RefusedFrame]  # refused frames above the old mark (the mark moved past them)
    signal: CommitSignal | None  # what live frame feeds should hear, if the mark moved
    stored_bytes: int = 0  # image bytes of the accepted frames


class FrameWriter:
    """Commits frame batches; one per process, shared by every stream."""

    def __init__(
        self, pool: asyncpg.Pool, blobs: FrameBlobStore, partitions: PartitionManager | None
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._partitions = partitions

    async def commit(self, batch: PreparedFrames) -> FrameCommit:
        """Write `batch` exactly once. Raises NotFound or PermissionDenied for the device."""
        async with self._pool.acquire() as conn:
            days = batch.days()
            if self._partitions is not None and self._partitions.missing(days):
                await self._partitions.ensure(conn, days)
            async with conn.transaction():
                mark = await self._lock(conn, batch.device_id)
                trimmed = trim(batch, mark)
                await insert_frames(conn, [f.row for f in trimmed.frames])
                await self._blobs.put(conn, [(f.row.key, f.data) for f in trimmed.frames])
                await self._record(conn, batch, trimmed)
        return FrameCommit(
            mark=trimmed.mark,
            accepted=len(trimmed.frames),
            duplicates=trimmed.duplicates,
            refused=trimmed.refused,
            signal=_signal(batch.device_id, mark, trimmed),
            stored_bytes=sum(len(f.data) for f in trimmed.frames),
        )

    async def _lock(self, conn: asyncpg.Connection, device_id: str) -> int:
        row = await conn.fetchrow(_LOCK_OFFSET, device_id)
        if row is None:  # the device's first frames (or no such device)
            try:
                await conn.execute(_CREATE_OFFSET, device_id)
            except asyncpg.ForeignKeyViolationError:  # deleted meanwhile
                row = None
            else:
                row = await conn.fetchrow(_LOCK_OFFSET, device_id)
        if row is None:
            raise NotFound(f"device {device_id!r} does not exist")
        if row["status"] != DEVICE_STATUS_ACTIVE:
            raise PermissionDenied(f"device {device_id!r} is disabled")
        return int(row["committed_sequence"])

    async def _record(self, conn: asyncpg.Connection, batch: PreparedFrames, trimmed: TrimmedFrames) -> None:
        newest = _newest_per_camera(trimmed.frames)
        thinned = list(dict.fromkeys(batch.thinned))  # the same report twice in one batch is one report
        await conn.execute(
            _RECORD_BATCH,
            batch.device_id,
            trimmed.mark,
            [f.row.camera for f in newest],
            [f.row.sequence for f in newest],
            [f.row.time for f in newest],
            [t.camera for t in thinned],
            [t.count for t in thinned],
            [t.first_time for t in thinned],
            [t.last_time for t in thinned],
            batch.last_sequence,
        )


def _newest_per_camera(frames: list[AcceptedFrame]) -> list[AcceptedFrame]:
    newest: dict[str, AcceptedFrame] = {}
    for frame in frames:
        known = newest.get(frame.row.camera)
        if known is None or (known.row.time, known.row.sequence) <= (frame.row.time, frame.row.sequence):
            newest[frame.row.camera] = frame
    return list(newest.values())


def _signal(device_id: str, mark: int, trimmed: TrimmedFrames) -> CommitSignal | None:
    """The frame mark's move, as the live frame feeds hear it (sensormesh_core/storage/live_signal.py):
    from the old mark + 1, so a device's signals tile its frame sequence; without a time range
    when no frame was stored."""
    if trimmed.mark <= mark:
        return None
    if not trimmed.frames:
        return CommitSignal(device_id, mark + 1, trimmed.mark, None, None)
    times = [f.row.time for f in trimmed.frames]
    return CommitSignal(device_id, mark + 1, trimmed.mark, min(times), max(times))
