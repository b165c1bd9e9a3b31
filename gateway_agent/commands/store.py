"""The commands' state on disk: a second connection to the buffer's SQLite file, on its own thread.

The command journal (journal.py) and the persisted input settings
(input_overrides.py) live in the same file as the readings, so a gateway has
one file to back up or wipe, but not on the buffer's connection: the buffer's
worker thread is busy with group commits, and a command must not wait behind
a thinning pass. WAL mode lets the two connections share the file; SQLite's
busy timeout (5 s on both, Python's default) orders their writes.

Every write here commits with `synchronous=FULL`, whatever the buffer's
setting: commands are rare, so an fsync each costs nothing, and the journal's
promise (a command recorded as running is never run again) then holds across
power loss too, not only across a crash of the agent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class StateStore:
    """One SQLite connection used from one worker thread; open with `await StateStore.open(path)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commands-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> StateStore:
        store = cls(path)
        await store.run(lambda _conn: None)
        return store

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.isolation_level = "DEFERRED"  # `with conn:` now wraps a transaction
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the store's thread; `with conn:` inside it is one transaction."""
        if self._closed:
            raise RuntimeError("the command store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(self._connection())
        )

    async def close(self) -> None:
        if self._closed:
            return

        def close(_conn: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self.run(close)
        self._closed = True
        self._executor.shutdown(wait=True)
