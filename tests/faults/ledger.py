"""What an agent took, read from its own buffer: the ground truth of the fault tests.

Before the agent first starts, the test creates its SQLite buffer with the
agent's own code and adds a trigger: every row inserted into `readings` is
copied into a `ledger` table in the same transaction. So a reading is in the
ledger exactly when it counts as taken (its group commit returned); a kill -9
that rolls back a commit rolls back its ledger rows too. A thread of the test
moves ledger rows into memory every 100 ms and deletes them, so the ledger
stays small and does not eat into the disk budget the agent enforces.

Thinning rewrites the rows it keeps (delete and insert again), which fires the
trigger again for the same row id: the tap keeps the first copy and checks
that the bytes are the same.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from gateway_agent.buffer import Buffer, BufferSettings

_LEDGER = """
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS ledger_taken AFTER INSERT ON readings
BEGIN
    INSERT OR REPLACE INTO ledger (id, payload) VALUES (new.id, new.payload);
END;
"""


class LedgerTap:
    """Every reading the agent with buffer `path` commits: row id -> encoded Reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.taken: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def install(self) -> None:
        """Create the buffer the way the agent does, then add the ledger and its trigger."""
        buffer = await Buffer.open(BufferSettings(path=self.path))
        await buffer.close()
        with sqlite3.connect(self.path) as conn:
            conn.executescript(_LEDGER)
        self._thread = threading.Thread(target=self._run, name=f"ledger-{self.path.parent.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._stop.wait(0.1):
                self._drain(conn)
            self._drain(conn)
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute("SELECT id, payload FROM ledger").fetchall()
            conn.execute("DELETE FROM ledger")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        with self._lock:
            for row_id, payload in rows:
                known = self.taken.setdefault(row_id, payload)
                assert known == payload, f"row {row_id} of {self.path} changed its bytes"

    def last_id(self) -> int:
        """The newest row id taken so far (0 before the first)."""
        with self._lock:
            return max(self.taken, default=0)

    def close(self) -> None:
        """Stop draining after one last pass (call once the agent has stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def sequence_base(self) -> int:
        """Wire sequence = row id + this (fixed at the agent's first contact with the server)."""
        with sqlite3.connect(self.path) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'sequence_base'").fetchone()
        assert row is not None, f"{self.path}: the agent never reached the server"
        return int(row[0])

    def pending(self) -> set[int]:
        """Row ids still in the buffer (taken, not yet acknowledged)."""
        with sqlite3.connect(self.path) as conn:
            return {int(r[0]) for r in conn.execute("SELECT id FROM readings")}


async def install_ledger(path: Path) -> LedgerTap:
    tap = LedgerTap(path)
    await tap.install()
    return tap
