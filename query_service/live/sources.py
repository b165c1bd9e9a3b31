"""What a live hub feeds from: a commit-signal channel, and how to read what a signal names.

The hub (hub.py) is the same for readings and camera frames: one LISTEN per
process and channel, signals put back in sequence order per device, the
signalled items read back once and offered to every subscription of the
device, gaps reported after a lost connection. What differs is here: the
channel, the read, and the marks compared after a reconnect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from sensormesh.v1 import frame_pb2

from query_service.storage.frames import committed_frames, frame_marks
from query_service.storage.live_rows import Window, committed_readings
from sensormesh_core.storage.frames import StoredFrame
from sensormesh_core.storage.live_signal import CHANNEL, FRAMES_CHANNEL, CommitSignal


class LiveSource(Protocol):
    """A channel of commit signals and the items they name."""

    channel: str

    async def read(self, conn: asyncpg.Connection, signal: CommitSignal) -> Sequence[object]:
        """The committed items of a signal with rows (its sequence and time ranges)."""

    async def marks(self, conn: asyncpg.Connection, device_ids: list[str]) -> dict[str, int]:
        """Each existing device's committed sequence on this channel; deleted devices are absent."""


class ReadingsSource:
    """Readings: the `upload_offsets` mark and the reading tables."""

    channel = CHANNEL

    async def read(self, conn: asyncpg.Connection, signal: CommitSignal) -> Sequence[object]:
        assert signal.first_time is not None and signal.last_time is not None
        window = Window(
            signal.device_id, signal.first_time, signal.last_time, signal.first_sequence, signal.last_sequence
        )
        return await committed_readings(conn, window)

    async def marks(self, conn: asyncpg.Connection, device_ids: list[str]) -> dict[str, int]:
        rows = await conn.fetch(
            "SELECT device_id, committed_sequence FROM upload_offsets WHERE device_id = ANY($1::text[])",
            device_ids,
        )
        return {row["device_id"]: int(row["committed_sequence"]) for row in rows}


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """A committed frame with what subscribers filter on, and its metadata message."""

    sequence: int
    camera: str
    stored: StoredFrame
    message: frame_pb2.Frame


def frame_message(stored: StoredFrame) -> frame_pb2.Frame:
    """A stored frame's metadata as the contract's Frame (no image bytes)."""
    row = stored.row
    message = frame_pb2.Frame(
        device_id=row.device_id,
        camera=row.camera,
        sequence=row.sequence,
        content_type=row.content_type,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
    )
    message.capture_time.FromDatetime(row.time)
    message.receive_time.FromDatetime(stored.receive_time)
    return message


def live_frame(stored: StoredFrame) -> LiveFrame:
    return LiveFrame(stored.row.sequence, stored.row.camera, stored, frame_message(stored))


class FramesSource:
    """Camera frames: the `frame_offsets` mark and the `frames` table."""

    channel = FRAMES_CHANNEL

    async def read(self, conn: asyncpg.Connection, signal: CommitSignal) -> Sequence[object]:
        assert signal.first_time is not None and signal.last_time is not None
        stored = await committed_frames(
            conn,
            signal.device_id,
            signal.first_sequence,
            signal.last_sequence,
            signal.first_time,
            signal.last_time,
        )
        return [live_frame(frame) for frame in stored]

    async def marks(self, conn: asyncpg.Connection, device_ids: list[str]) -> dict[str, int]:
        return await frame_marks(conn, device_ids)
