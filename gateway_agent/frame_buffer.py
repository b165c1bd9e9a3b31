"""The async side of the frame spool: frames handed over by the camera inputs, written at once on
the buffer's SQLite thread, read and forgotten by the frame uplink.

`add` never blocks (it is called from the scheduler's sink, like the readings'
`Buffer.add`): frames wait in memory, at most `MAX_WAITING`, and a writer task
spools them as soon as they come, one transaction each batch, then lets the
buffer enforce the shared disk budget. A frame counts as taken once spooled;
`flush` waits for that and says its number.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable

from sensormesh.v1.frame_pb2 import Frame

from gateway_agent.buffer import Buffer
from gateway_agent.frame_spool import FramesThinned, NewFrame, SpooledFrame

log = logging.getLogger(__name__)

MAX_WAITING = 64
"""Frames held in memory while the disk is slow; beyond, the newest are refused and logged."""


class FrameBuffer:
    """Frames waiting for the uplink, numbered in the device's frame sequence."""

    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer
        self._spool = buffer.spool
        self._waiting: list[NewFrame] = []
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.dropped_in_memory = 0

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="frame-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self.flush()

    def add(self, frames: Iterable[Frame]) -> None:
        """Queue frames for the spool; never blocks."""
        for frame in frames:
            if len(self._waiting) >= MAX_WAITING:
                self.dropped_in_memory += 1
                log.error("event=frame_dropped camera=%s reason=disk_not_keeping_up", frame.camera)
                continue
            capture_ns = frame.capture_time.seconds * 1_000_000_000 + frame.capture_time.nanos
            self._waiting.append(NewFrame(frame.camera, capture_ns, frame.SerializeToString()))
        self._wake.set()

    async def flush(self) -> int | None:
        """Spool what waits now; returns the newest frame's sequence (None before binding)."""
        waiting, self._waiting = self._waiting, []
        if waiting:
            try:
                await self._buffer.run_on_disk(lambda conn: self._add(conn, waiting))
            except BaseException:
                self._waiting[:0] = waiting
                raise
            self._changed.set()
        return self.last_sequence if self.bound else None

    def _add(self, conn: sqlite3.Connection, frames: list[NewFrame]) -> None:
        self._spool.add(conn, frames)
        self._buffer.enforce_budget(conn)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except (OSError, sqlite3.Error):
                log.exception("event=frame_spool_failed")
                await asyncio.sleep(1.0)

    # -- the uplink's side ---------------------------------------------------------------------

    async def bind_sequence(self, committed: int) -> None:
        """Fix the numbering against the server's frame mark (call on every contact)."""
        if await self._buffer.run_on_disk(lambda conn: self._spool.bind(conn, committed)) and committed:
            log.info("event=frame_sequence_bound committed_sequence=%d", committed)

    @property
    def bound(self) -> bool:
        return self._spool.base is not None

    @property
    def last_sequence(self) -> int:
        base = self._spool.base
        if base is None:
            raise RuntimeError("bind_sequence() must run before sequences are used")
        return self._spool.last_id + base

    async def read(self, after_sequence: int, limit: int, max_bytes: int) -> list[SpooledFrame]:
        return await self._buffer.run_on_disk(
            lambda conn: self._spool.read(conn, after_sequence, limit, max_bytes)
        )

    async def wait_for_data(self, after_sequence: int) -> None:
        """Return once a frame numbered above `after_sequence` is spooled (bound it with a timeout)."""
        while self.last_sequence <= after_sequence:
            self._changed.clear()
            await self._changed.wait()

    async def forget_through(self, sequence: int) -> None:
        await self._buffer.run_on_disk(lambda conn: self._spool.forget(conn, sequence))

    async def pending_thinning(self) -> list[FramesThinned]:
        return await self._buffer.run_on_disk(self._spool.pending_thinning)

    async def mark_thinning_sent(self, reports: Iterable[FramesThinned], sequence: int) -> None:
        ids = [(sequence, i) for report in reports for i in report.ids]
        await self._buffer.run_on_disk(lambda conn: self._spool.mark_thinning_sent(conn, ids))

    async def pending(self) -> int:
        return await self._buffer.run_on_disk(self._spool.pending)

    @property
    def thinned_total(self) -> int:
        return self._spool.thinned_total
