"""Camera frames on disk beside the readings' buffer, inside the same disk budget.

Each frame is one file in a folder next to the SQLite buffer (the encoded
`Frame` message, image included, without its sequence), indexed by a row of
the buffer's own database (`frames`: id, camera, capture time, size). Frames
get their own numbers (AUTOINCREMENT ids plus a base bound to the server's
frame mark, as readings), so the readings' sequence is untouched.

Durability: a frame's file is written, fsynced and renamed into place inside
the transaction that inserts its row, before the commit; a crash leaves at
most a file without a row, removed at the next open. A row whose file has
gone (a damaged card) is dropped at open and reported as thinned, so the
loss is visible on the server.

Budget: the readings' buffer counts these files' bytes with its own and,
over budget, thins frames first (`thin`): every other frame of each camera in
the oldest half the spool holds, as readings are thinned, and reported
upstream per camera (`frame_thinned`). Frames are large and a moment's
picture; readings are small and continuous, so losing half the old snapshots
costs less than losing readings.

Everything here is synchronous and runs on the buffer's SQLite thread
(gateway_agent/frame_buffer.py is the async side).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    capture_time_ns INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS frame_thinned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_capture_time_ns INTEGER NOT NULL,
    last_capture_time_ns INTEGER NOT NULL,
    sent_with_sequence INTEGER
);
"""
_SUFFIX = ".frame"
_BASE_KEY = "frame_sequence_base"


@dataclass(frozen=True)
class SpooledFrame:
    """A frame waiting on disk: its wire sequence and its encoded `Frame` (without the sequence)."""

    sequence: int
    payload: bytes


@dataclass(frozen=True)
class NewFrame:
    """A frame to spool: what the index needs and the encoded message."""

    camera: str
    capture_time_ns: int
    payload: bytes


@dataclass(frozen=True)
class FramesThinned:
    """Frames of one camera discarded and not yet acknowledged upstream."""

    ids: tuple[int, ...]
    camera: str
    count: int
    first_capture_time_ns: int
    last_capture_time_ns: int


class FrameSpool:
    """The frame files and their index in the buffer's SQLite database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.base: int | None = None
        self.last_id = 0
        self.disk_bytes = 0
        self.thinned_total = 0
        self.handed_out_id = 0  # the newest frame read for the uplink: thinning leaves it and older ones

    def _file(self, frame_id: int) -> Path:
        return self.directory / f"{frame_id:016d}{_SUFFIX}"

    def open(self, conn: sqlite3.Connection) -> None:
        """Create the tables, drop files without rows and rows without files, learn the numbering."""
        conn.executescript(_SCHEMA)
        self.directory.mkdir(parents=True, exist_ok=True)
        rows = dict(conn.execute("SELECT id, size FROM frames").fetchall())
        for path in self.directory.iterdir():
            stem = path.name.removesuffix(_SUFFIX)
            if not path.name.endswith(_SUFFIX) or not stem.isdigit() or int(stem) not in rows:
                path.unlink(missing_ok=True)  # a write cut short, or a row forgotten before its file
        missing = [frame_id for frame_id in rows if not self._file(frame_id).exists()]
        if missing:
            self._drop(conn, missing, reason="lost")
        self.disk_bytes = sum(size for frame_id, size in rows.items() if frame_id not in set(missing))
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_BASE_KEY,)).fetchone()
        self.base = None if row is None else int(row[0])
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'frames'").fetchone()
        self.last_id = 0 if row is None else int(row[0])

    def add(self, conn: sqlite3.Connection, frames: list[NewFrame]) -> int:
        """Spool `frames` durably, in order; returns the last id."""
        with conn:
            for frame in frames:
                cursor = conn.execute(
                    "INSERT INTO frames (camera, capture_time_ns, size) VALUES (?, ?, ?)",
                    (frame.camera, frame.capture_time_ns, len(frame.payload)),
                )
                frame_id = int(cursor.lastrowid or 0)
                self._write(frame_id, frame.payload)
                self.last_id = frame_id
                self.disk_bytes += len(frame.payload)
        return self.last_id

    def _write(self, frame_id: int, payload: bytes) -> None:
        target = self._file(frame_id)
        temporary = target.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)

    def bind(self, conn: sqlite3.Connection, committed: int) -> bool:
        """Fix the numbering against the server's frame mark; True when it changed (see buffer.py)."""
        last_assigned = None if self.base is None else self.last_id + self.base
        if last_assigned is not None and committed <= last_assigned:
            return False
        first_pending = conn.execute("SELECT min(id) FROM frames").fetchone()[0] or self.last_id + 1
        base = committed - (first_pending - 1)
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_BASE_KEY, base))
        self.base = base
        return True

    def read(
        self, conn: sqlite3.Connection, after_sequence: int, limit: int, max_bytes: int
    ) -> list[SpooledFrame]:
        """Frames numbered above `after_sequence` in order: at most `limit`, and `max_bytes` in all
        (at least one frame, whatever its size)."""
        base = self._base()
        rows = conn.execute(
            "SELECT id, size FROM frames WHERE id > ? ORDER BY id LIMIT ?", (after_sequence - base, limit)
        ).fetchall()
        chosen: list[SpooledFrame] = []
        total = 0
        for frame_id, size in rows:
            if chosen and total + size > max_bytes:
                break
            try:
                payload = self._file(frame_id).read_bytes()
            except FileNotFoundError:  # thinned meanwhile cannot happen (handed-out frames are kept)
                break
            chosen.append(SpooledFrame(frame_id + base, payload))
            total += size
        if chosen:
            self.handed_out_id = max(self.handed_out_id, chosen[-1].sequence - base)
        return chosen

    def forget(self, conn: sqlite3.Connection, sequence: int) -> None:
        """Delete frames and thinning reports an acknowledgement through `sequence` covers."""
        through = sequence - self._base()
        rows = conn.execute("SELECT id, size FROM frames WHERE id <= ?", (through,)).fetchall()
        with conn:
            conn.execute("DELETE FROM frames WHERE id <= ?", (through,))
            conn.execute("DELETE FROM frame_thinned WHERE sent_with_sequence <= ?", (sequence,))
        for frame_id, size in rows:
            self._file(frame_id).unlink(missing_ok=True)
            self.disk_bytes -= size

    def thin(self, conn: sqlite3.Connection) -> int:
        """Drop every other frame of each camera among the oldest half of the frames not yet handed
        to the uplink; returns how many were dropped (0 when too few are left to thin)."""
        rows = conn.execute(
            "SELECT id, camera FROM frames WHERE id > ? ORDER BY id", (self.handed_out_id,)
        ).fetchall()
        if len(rows) < 2:
            return 0
        seen: dict[str, int] = {}
        dropped = []
        for frame_id, camera in rows[: len(rows) // 2]:
            seen[camera] = seen.get(camera, 0) + 1
            if seen[camera] % 2 == 0:
                dropped.append(frame_id)
        if not dropped:  # no camera has two old frames: the oldest frame goes
            dropped = [rows[0][0]]
        self._drop(conn, dropped, reason="thinned")
        return len(dropped)

    def _drop(self, conn: sqlite3.Connection, ids: list[int], *, reason: str) -> None:
        """Delete frames `ids` and record them as discarded, per camera, in one transaction."""
        marks = ",".join("?" * len(ids))
        with conn:
            conn.execute(
                "INSERT INTO frame_thinned (camera, count, first_capture_time_ns, last_capture_time_ns) "
                f"SELECT camera, count(*), min(capture_time_ns), max(capture_time_ns) FROM frames "
                f"WHERE id IN ({marks}) GROUP BY camera",
                ids,
            )
            sizes = conn.execute(f"SELECT sum(size) FROM frames WHERE id IN ({marks})", ids).fetchone()[0]
            conn.execute(f"DELETE FROM frames WHERE id IN ({marks})", ids)
        for frame_id in ids:
            self._file(frame_id).unlink(missing_ok=True)
        self.disk_bytes -= int(sizes or 0)
        self.thinned_total += len(ids)

    def pending_thinning(self, conn: sqlite3.Connection) -> list[FramesThinned]:
        rows = conn.execute(
            "SELECT group_concat(id), camera, sum(count), min(first_capture_time_ns), "
            "max(last_capture_time_ns) FROM frame_thinned GROUP BY camera ORDER BY camera"
        )
        return [
            FramesThinned(tuple(int(i) for i in ids.split(",")), camera, count, first, last)
            for ids, camera, count, first, last in rows
        ]

    def mark_thinning_sent(self, conn: sqlite3.Connection, ids: list[tuple[int, int]]) -> None:
        with conn:
            conn.executemany("UPDATE frame_thinned SET sent_with_sequence = ? WHERE id = ?", ids)

    def pending(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM frames").fetchone()[0])

    def _base(self) -> int:
        if self.base is None:
            raise RuntimeError("bind() must run before frame sequences are used")
        return self.base
