"""Frame metadata rows: what ingest writes, the query service reads and a device's deletion removes.

A row of `frames` describes one stored frame (capture time, frame sequence,
device, camera, content type, size); its image is in the frame store
(sensormesh_core/storage/frame_blobs.py) under the same key. Rows are
written with COPY in the frame batch's transaction
(ingest_service/frame_writer.py), never updated, and leave by retention
(whole days) or with their device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sensormesh_core.storage.frame_blobs import FrameBlobStore, FrameKey
from sensormesh_core.storage.schema import FRAME_COLUMNS, FRAMES_TABLE


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One frame's metadata, as stored (FRAME_COLUMNS order)."""

    time: datetime  # capture time
    sequence: int
    device_id: str
    camera: str
    content_type: str
    width: int
    height: int
    size_bytes: int

    @property
    def key(self) -> FrameKey:
        return FrameKey(self.device_id, self.sequence, self.time)

    def record(self) -> tuple[object, ...]:
        return (
            self.time,
            self.sequence,
            self.device_id,
            self.camera,
            self.content_type,
            self.width,
            self.height,
            self.size_bytes,
        )


@dataclass(frozen=True, slots=True)
class StoredFrame:
    """A frame's metadata as read back, with when ingest committed it."""

    row: FrameRow
    receive_time: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> StoredFrame:
        row = FrameRow(*(record[column] for column in FRAME_COLUMNS))
        return cls(row, record["receive_time"])


SELECT_FRAME = f"SELECT {', '.join(FRAME_COLUMNS)}, receive_time FROM {FRAMES_TABLE}"
"""The columns `StoredFrame.from_record` reads; add WHERE and ORDER BY."""


async def insert_frames(conn: asyncpg.Connection, rows: Sequence[FrameRow]) -> None:
    """COPY `rows` into `frames` (the caller's transaction; partitions must exist)."""
    if rows:
        await conn.copy_records_to_table(
            FRAMES_TABLE, records=[row.record() for row in rows], columns=FRAME_COLUMNS
        )


async def delete_device_frames(conn: asyncpg.Connection, device_id: str, blobs: FrameBlobStore) -> int:
    """Delete the device's frames and their images (the caller's transaction); returns how many."""
    status = await conn.execute(f"DELETE FROM {FRAMES_TABLE} WHERE device_id = $1", device_id)
    await blobs.delete_device(conn, device_id)
    return int(status.rsplit(" ", 1)[-1])
