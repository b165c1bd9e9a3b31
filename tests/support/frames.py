"""Real images and stored frames for tests: JPEGs and PNGs drawn by Pillow, and frames written
the way ingest writes them (metadata rows and images, partitions first on plain PostgreSQL)."""

from __future__ import annotations

import io
from datetime import datetime

import asyncpg
from PIL import Image, ImageDraw
from sensormesh.v1 import frame_pb2

from sensormesh_core.storage.frame_blobs import PostgresFrameBlobs
from sensormesh_core.storage.frames import FrameRow, insert_frames
from sensormesh_core.storage.maintenance import Backend, storage_backend
from sensormesh_core.storage.partitions import PartitionManager
from sensormesh_core.storage.schema import FRAME_TABLES


def image(width: int = 64, height: int = 48, text: str = "", fmt: str = "JPEG") -> bytes:
    """A small test image: a gradient with `text` drawn on it, so images differ by text."""
    picture = Image.new("RGB", (width, height), (20, 40, 90))
    draw = ImageDraw.Draw(picture)
    for x in range(0, width, 4):
        draw.line([(x, 0), (x, height)], fill=(x * 255 // max(width, 1), 120, 200))
    if text:
        draw.text((2, 2), text, fill=(255, 255, 255))
    out = io.BytesIO()
    picture.save(out, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return out.getvalue()


def frame(sequence: int, at: datetime, *, camera: str = "cam", data: bytes | None = None) -> frame_pb2.Frame:
    """An upload's frame: a 64x48 JPEG captured at `at`."""
    content = data if data is not None else image(text=str(sequence))
    message = frame_pb2.Frame(
        camera=camera, sequence=sequence, content_type="image/jpeg", width=64, height=48, data=content
    )
    message.capture_time.FromDatetime(at)
    return message


async def store_frame(
    conn: asyncpg.Connection, device_id: str, sequence: int, at: datetime, data: bytes, camera: str = "cam"
) -> FrameRow:
    """Write one frame's row and image directly (for tests of what reads or deletes them)."""
    if await storage_backend(conn) is Backend.PARTITIONED:
        await PartitionManager(FRAME_TABLES).ensure(conn, [at.date()])
    row = FrameRow(at, sequence, device_id, camera, "image/jpeg", 64, 48, len(data))
    async with conn.transaction():
        await insert_frames(conn, [row])
        await PostgresFrameBlobs().put(conn, [(row.key, data)])
    return row
