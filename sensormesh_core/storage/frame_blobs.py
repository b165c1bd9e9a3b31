"""Where frame images live: one small interface, PostgreSQL behind it by default.

A frame's metadata is a row of `frames` (sensormesh_core/storage/frames.py);
its image is a blob this interface stores and returns by the frame's key:
device, frame sequence and capture time. The capture time is in the key so
that a store can partition by it: the PostgreSQL store's table is
partitioned like `frames` (migration 0008), so one retention drops a day's
metadata and images together, and a read touches one partition.

Exactly once holds for images as for rows: ingest calls `put` inside the
frame batch's transaction, and the PostgreSQL store writes on that
transaction's connection, so the images commit with the rows and the mark,
or not at all. A store outside the database (S3-compatible, later) would
write in `put` before the commit under the same deterministic key, so a
batch retried after a failure overwrites what the failed attempt left, and
would leave retention to a lifecycle rule on the key's date; `conn` is then
unused. Nothing else in sensormesh knows where images live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from sensormesh_core.storage.schema import FRAME_BLOBS_TABLE


@dataclass(frozen=True, slots=True)
class FrameKey:
    """What names a frame's image: unique per device (frame sequences are), dated by capture."""

    device_id: str
    sequence: int
    capture_time: datetime


class FrameBlobStore(Protocol):
    """Stores and returns frame images by key."""

    async def put(self, conn: asyncpg.Connection, blobs: Sequence[tuple[FrameKey, bytes]]) -> None:
        """Store `blobs` as part of the caller's transaction on `conn` (see the module doc)."""

    async def get(self, conn: asyncpg.Connection, key: FrameKey) -> bytes | None:
        """The image of `key`, or None when there is none (deleted, past retention)."""

    async def delete_device(self, conn: asyncpg.Connection, device_id: str) -> None:
        """Delete every image of `device_id`, in the caller's transaction."""


class PostgresFrameBlobs:
    """Images in the `frame_blobs` table, beside their metadata: the default store, so the
    embedded PostgreSQL of `sensormesh up` holds everything."""

    async def put(self, conn: asyncpg.Connection, blobs: Sequence[tuple[FrameKey, bytes]]) -> None:
        if blobs:
            await conn.copy_records_to_table(
                FRAME_BLOBS_TABLE,
                records=[(key.capture_time, key.sequence, key.device_id, data) for key, data in blobs],
                columns=("time", "sequence", "device_id", "data"),
            )

    async def get(self, conn: asyncpg.Connection, key: FrameKey) -> bytes | None:
        data = await conn.fetchval(
            f"SELECT data FROM {FRAME_BLOBS_TABLE} WHERE device_id = $1 AND sequence = $2 AND time = $3",
            key.device_id,
            key.sequence,
            key.capture_time,
        )
        return None if data is None else bytes(data)

    async def delete_device(self, conn: asyncpg.Connection, device_id: str) -> None:
        await conn.execute(f"DELETE FROM {FRAME_BLOBS_TABLE} WHERE device_id = $1", device_id)
