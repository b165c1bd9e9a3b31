"""The store-and-forward buffer: readings on disk in SQLite until the server acknowledges them.

Durability. Readings handed to `add()` are held in memory and written by a
group commit at most `commit_interval` later (or as soon as
`commit_max_readings` wait): one transaction and one fsync for many readings,
so 100 Hz costs a few commits a second, not a hundred. A reading counts as
taken once its commit returns; only then does it have a sequence number and
become visible to the uplink. The trade-off, stated plainly: a crash (kill -9,
power loss) loses the readings of at most the last `commit_interval` that
were not yet committed, and nothing that was. With `synchronous = "full"`
(the default) a commit is on the storage medium when it returns, so power
loss keeps it too; with "normal" a process crash keeps it, a power loss may
roll back the last commits (WAL mode never corrupts either way).

Numbering. Readings get consecutive sequence numbers in commit order; a
number is never reused, even after the rows are forgotten (AUTOINCREMENT).
Wire sequence = row id + a base fixed at the first contact with the server
(`bind_sequence`), so a fresh buffer on a device that has uploaded before
(a replaced SD card) continues above the server's mark instead of being
dropped as duplicates.

Everything SQLite runs on one worker thread that owns the connection; the
event loop never blocks on disk. The buffer knows nothing of sensors beyond
a name and a sample time per record (for thinning reports), nor of gRPC.

Camera frames share the file and the disk budget: their spool
(gateway_agent/frame_spool.py, files in a folder beside this file, indexed
here) counts in `disk_budget`, and over budget frames are thinned before
readings. gateway_agent/frame_buffer.py is their async side, on this
buffer's worker thread (`run_on_disk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from gateway_agent import thinning
from gateway_agent.buffer_settings import BufferSettings
from gateway_agent.frame_spool import FrameSpool

# BufferSettings lives in gateway_agent/buffer_settings.py; it is named here too, so whoever
# opens a buffer imports the buffer and its settings from one place.
__all__ = ["Buffer", "BufferSettings", "BufferStats", "Record", "Stored", "Thinned"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sensors (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id INTEGER NOT NULL,
    sample_time_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS thinned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_sample_time_ns INTEGER NOT NULL,
    last_sample_time_ns INTEGER NOT NULL,
    sent_with_sequence INTEGER
);
"""


@dataclass(frozen=True)
class Record:
    """A reading to buffer: its sensor, its sample time and its encoded bytes."""

    sensor: str
    sample_time_ns: int
    payload: bytes


@dataclass(frozen=True)
class Stored:
    """A buffered reading with its sequence number."""

    sequence: int
    payload: bytes


@dataclass(frozen=True)
class Thinned:
    """Readings of one sensor the agent discarded (thinned to stay within the disk budget, or
    refused in memory while the disk stalled), not yet acknowledged upstream."""

    ids: tuple[int, ...]
    sensor: str
    count: int
    first_sample_time_ns: int
    last_sample_time_ns: int


@dataclass(frozen=True)
class BufferStats:
    """How full the buffer is."""

    pending: int
    last_sequence: int | None
    used_bytes: int
    thinned_total: int


class Buffer:
    """A durable FIFO of readings with sequence numbers; open with `await Buffer.open(settings)`."""

    def __init__(self, settings: BufferSettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self._conn: sqlite3.Connection | None = None
        self._sensor_ids: dict[str, int] = {}
        self._uncommitted: list[Record] = []
        self._base: int | None = None
        self._last_id = 0
        self._changed = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped_in_memory = 0
        self.thinned_total = 0
        # Readings refused while the disk stalled, per sensor: (count, first, last sample time),
        # written to the thinning reports with the next commit.
        self._dropped: dict[str, tuple[int, int, int]] = {}
        # The newest row read for the uplink: it and the rows before it may be on the server
        # already, so thinning leaves them alone (touched on the SQLite thread only).
        self._handed_out_id = 0
        self.spool = FrameSpool(settings.path.with_name(settings.path.name + ".frames"))

    @classmethod
    async def open(cls, settings: BufferSettings) -> Buffer:
        buffer = cls(settings)
        await buffer._run(buffer._open)
        buffer._writer = asyncio.create_task(buffer._write_loop(), name="buffer-writer")
        return buffer

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_on_disk(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the buffer's SQLite thread (the frame buffer's way in)."""
        return await self._run(lambda: fn(self._connection()))

    def _open(self) -> None:
        self.settings.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.settings.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.settings.synchronous.upper()}")
        conn.execute("PRAGMA temp_store=MEMORY")
        # A small page cache: this runs on a Pi, and reads are sequential (the uplink reads each page once).
        conn.execute("PRAGMA cache_size=-512")
        conn.execute("PRAGMA journal_size_limit=8388608")  # truncate the WAL to 8 MiB after checkpoints
        conn.executescript(_SCHEMA)
        conn.isolation_level = "DEFERRED"  # `with conn:` now wraps a transaction
        self._sensor_ids = dict(conn.execute("SELECT name, id FROM sensors").fetchall())
        self.spool.open(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'sequence_base'").fetchone()
        self._base = None if row is None else int(row[0])
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        self._last_id = 0 if row is None else int(row[0])
        self._conn = conn

    # -- taking readings -------------------------------------------------------------------------

    def add(self, records: Iterable[Record]) -> None:
        """Queue readings for the next group commit. Never blocks; see the module doc for durability."""
        records = list(records)
        room = max(self.settings.max_uncommitted - len(self._uncommitted), 0)
        if len(records) > room:
            # The disk has stalled for a long time: refuse what does not fit, loudly, and
            # report it upstream with the next commit, as thinning is.
            for record in records[room:]:
                self._note_dropped(record.sensor, 1, record.sample_time_ns, record.sample_time_ns)
            self.dropped_in_memory += len(records) - room
            log.error("event=buffer_overflow dropped=%d reason=disk_not_keeping_up", len(records) - room)
            records = records[:room]
        self._uncommitted.extend(records)
        if len(self._uncommitted) >= self.settings.commit_max_readings:
            self._wake_writer.set()

    def _note_dropped(self, sensor: str, count: int, first_ns: int, last_ns: int) -> None:
        """Add `count` refused readings of `sensor`, sampled from `first_ns` to `last_ns`."""
        known = self._dropped.get(sensor)
        if known is not None:
            count, first_ns, last_ns = known[0] + count, min(known[1], first_ns), max(known[2], last_ns)
        self._dropped[sensor] = (count, first_ns, last_ns)

    async def flush(self) -> int:
        """Commit what is queued now; returns the last row id committed. If the commit
        fails, the readings stay queued (in front of newer ones) for the next try."""
        records, self._uncommitted = self._uncommitted, []
        dropped, self._dropped = self._dropped, {}
        if records or dropped:
            try:
                self._last_id = await self._run(self._commit, records, dropped)
            except BaseException:
                self._uncommitted[:0] = records
                for sensor, summary in dropped.items():
                    self._note_dropped(sensor, *summary)
                raise
            self._changed.set()
        return self._last_id

    async def _write_loop(self) -> None:
        interval = self.settings.commit_interval.total_seconds()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_writer.wait(), interval)
            self._wake_writer.clear()
            try:
                await self.flush()
            except sqlite3.Error:
                # Keep running: the readings stay queued in memory up to max_uncommitted.
                log.exception("event=buffer_commit_failed")
                await asyncio.sleep(interval)

    def _sensor_id(self, conn: sqlite3.Connection, name: str) -> int:
        sensor_id = self._sensor_ids.get(name)
        if sensor_id is None:
            cursor = conn.execute("INSERT INTO sensors (name) VALUES (?)", (name,))
            sensor_id = self._sensor_ids[name] = int(cursor.lastrowid or 0)
        return sensor_id

    def _commit(self, records: list[Record], dropped: dict[str, tuple[int, int, int]]) -> int:
        conn = self._connection()
        try:
            with conn:
                rows = [(self._sensor_id(conn, r.sensor), r.sample_time_ns, r.payload) for r in records]
                conn.executemany(
                    "INSERT INTO readings (sensor_id, sample_time_ns, payload) VALUES (?, ?, ?)", rows
                )
                conn.executemany(
                    "INSERT INTO thinned (sensor, count, first_sample_time_ns, last_sample_time_ns)"
                    " VALUES (?, ?, ?, ?)",
                    [(sensor, *summary) for sensor, summary in dropped.items()],
                )
        except sqlite3.Error:
            self._sensor_ids = dict(conn.execute("SELECT name, id FROM sensors").fetchall())
            raise
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        self.enforce_budget(conn)
        return self._last_id if row is None else int(row[0])

    def enforce_budget(self, conn: sqlite3.Connection) -> None:
        """Thin until readings and frames fit the budget: frames first, readings when no frame is
        left to thin. Runs on the SQLite thread after every commit of either."""
        budget = int(self.settings.disk_budget)
        used = thinning.used_bytes(conn) + self.spool.disk_bytes
        if used <= budget:
            return
        target = budget * self.settings.thin_to
        frames = 0
        while used > target and (thinned := self.spool.thin(conn)):
            frames += thinned
            used = thinning.used_bytes(conn) + self.spool.disk_bytes
        if frames:
            log.warning(
                "event=frames_thinned dropped=%d used_bytes=%d budget_bytes=%d",
                frames, used, budget,
            )  # fmt: skip
        if used <= target:
            return
        started = time.monotonic()
        dropped = 0
        while used > target:
            result = thinning.thin_oldest_half(conn, self._handed_out_id)
            if result.dropped == 0:
                break
            dropped += result.dropped
            used = result.used_bytes_after + self.spool.disk_bytes
        self.thinned_total += dropped
        log.warning(
            "event=buffer_thinned dropped=%d used_bytes=%d budget_bytes=%d seconds=%.3f",
            dropped, used, budget, time.monotonic() - started,
        )  # fmt: skip

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("buffer is closed")
        return self._conn

    # -- the uplink's side ------------------------------------------------------------------------

    async def bind_sequence(self, committed_sequence: int) -> None:
        """Fix the numbering against the server's mark (see the module doc); call on every contact."""
        await self._run(self._bind, committed_sequence)

    def _bind(self, committed: int) -> None:
        conn = self._connection()
        last_assigned = None if self._base is None else self._last_id + self._base
        if last_assigned is not None and committed <= last_assigned:
            return
        first_pending = conn.execute("SELECT min(id) FROM readings").fetchone()[0] or self._last_id + 1
        base = committed - (first_pending - 1)
        if self._base is not None:
            log.warning(
                "event=buffer_renumbered reason=server_mark_ahead committed_sequence=%d last_sequence=%d",
                committed, last_assigned,
            )  # fmt: skip
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('sequence_base', ?)", (base,))
        self._base = base

    @property
    def bound(self) -> bool:
        """Whether `bind_sequence` has fixed the numbering (sequences are meaningless before)."""
        return self._base is not None

    def _require_base(self) -> int:
        if self._base is None:
            raise RuntimeError("bind_sequence() must run before sequences are used")
        return self._base

    @property
    def last_sequence(self) -> int:
        """The sequence of the newest committed reading (the base if none was taken yet)."""
        return self._last_id + self._require_base()

    async def read(self, after_sequence: int, limit: int) -> list[Stored]:
        """Up to `limit` committed readings numbered above `after_sequence`, in order."""
        return await self._run(self._read, after_sequence, limit)

    def _read(self, after_sequence: int, limit: int) -> list[Stored]:
        base = self._require_base()
        rows = (
            self._connection()
            .execute(
                "SELECT id, payload FROM readings WHERE id > ? ORDER BY id LIMIT ?",
                (after_sequence - base, limit),
            )
            .fetchall()
        )
        if rows:
            self._handed_out_id = max(self._handed_out_id, rows[-1][0])
        return [Stored(row_id + base, payload) for row_id, payload in rows]

    async def wait_for_data(self, after_sequence: int) -> None:
        """Return once a reading numbered above `after_sequence` is committed (bound it with a timeout)."""
        while self.last_sequence <= after_sequence:
            self._changed.clear()
            await self._changed.wait()

    async def forget_through(self, sequence: int) -> None:
        """Delete readings and thinning reports that an acknowledgement up to `sequence` covers."""
        await self._run(self._forget, sequence)

    def _forget(self, sequence: int) -> None:
        conn = self._connection()
        with conn:
            conn.execute("DELETE FROM readings WHERE id <= ?", (sequence - self._require_base(),))
            conn.execute("DELETE FROM thinned WHERE sent_with_sequence <= ?", (sequence,))

    async def pending_thinning(self) -> list[Thinned]:
        """Thinning reports not yet acknowledged, merged per sensor."""
        return await self._run(self._pending_thinning)

    def _pending_thinning(self) -> list[Thinned]:
        rows = self._connection().execute(
            "SELECT group_concat(id), sensor, sum(count), min(first_sample_time_ns), max(last_sample_time_ns)"
            " FROM thinned GROUP BY sensor ORDER BY sensor"
        )
        return [
            Thinned(tuple(int(i) for i in ids.split(",")), sensor, count, first, last)
            for ids, sensor, count, first, last in rows
        ]

    async def mark_thinning_sent(self, reports: Iterable[Thinned], sequence: int) -> None:
        """Remember that `reports` travel in the batch ending at `sequence` (forgotten with its ack)."""
        ids = [(sequence, i) for report in reports for i in report.ids]
        await self._run(self._mark_sent, ids)

    def _mark_sent(self, ids: list[tuple[int, int]]) -> None:
        conn = self._connection()
        with conn:
            conn.executemany("UPDATE thinned SET sent_with_sequence = ? WHERE id = ?", ids)

    async def stats(self) -> BufferStats:
        return await self._run(self._stats)

    def _stats(self) -> BufferStats:
        conn = self._connection()
        pending = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        last = None if self._base is None else self._last_id + self._base
        return BufferStats(
            pending, last, thinning.used_bytes(conn) + self.spool.disk_bytes, self.thinned_total
        )

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.flush()
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
