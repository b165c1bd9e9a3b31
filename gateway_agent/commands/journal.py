"""The command journal: what makes a command run at most once on this device.

One row per command id, moving through

    received -> running -> finished            (run, or refused before running)
    received -> withdrawn                       (the service said not to run it)

Each move is committed (gateway_agent/commands/store.py: fsync'd) BEFORE the
message or the action it allows: the receipt is sent only once `received` is
on disk, the handler is started only once `running` is, the result is sent
only once `finished` (with the result) is. So whatever moment the agent dies
at, the row tells what may have happened, and the link (link.py) never runs a
command whose row is past `received`:

- received: the device confirmed (or was about to confirm) receipt but never
  started it: confirm again if offered again, run it on a CommandRun;
- running: the agent died during the run; it may have run partly. The row
  becomes a FAILED result saying so (`recover_interrupted`), reported like any;
- finished: the result is kept until the service confirms it has it
  (`reported`), and sent again whenever the command is offered again.

Rows the service no longer needs (reported, withdrawn) and rows of commands
never told to run (received) are deleted after a week (`prune`): the service
stops offering a command when it expires (at most 30 days, so a received row
pruned earlier is only offered again if it never ran: still at most once).
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from gateway_agent.commands.store import StateStore

PRUNE_AFTER_NS = 7 * 86400 * 10**9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_journal (
    command_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    parameters TEXT NOT NULL,
    result_timeout_s REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('received', 'running', 'finished', 'withdrawn')),
    succeeded INTEGER,
    result TEXT,
    error TEXT,
    finish_time_ns INTEGER,
    reported INTEGER NOT NULL DEFAULT 0,
    change_time_ns INTEGER NOT NULL
);
"""
_COLUMNS = "command_id, name, parameters, result_timeout_s, state, succeeded, result, error, finish_time_ns, reported"


class EntryState(enum.StrEnum):
    RECEIVED = "received"
    RUNNING = "running"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class Outcome:
    """What a run came to, as the journal keeps it and the result reports it."""

    succeeded: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    finish_time_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True)
class JournalEntry:
    """One command as the device knows it."""

    command_id: int
    name: str
    parameters: dict[str, Any]
    result_timeout_s: float
    state: EntryState
    outcome: Outcome | None  # set once finished
    reported: bool


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    command_id, name, parameters, timeout_s, state, succeeded, result, error, finish_ns, reported = row
    outcome = None
    if state == EntryState.FINISHED:
        outcome = Outcome(bool(succeeded), json.loads(result or "{}"), error or "", int(finish_ns))
    return JournalEntry(
        int(command_id),
        name,
        json.loads(parameters),
        float(timeout_s),
        EntryState(state),
        outcome,
        bool(reported),
    )


class CommandJournal:
    """The journal's rows; every method is one committed transaction. Open with `await open(store)`."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    @classmethod
    async def open(cls, store: StateStore) -> CommandJournal:
        await store.run(lambda conn: conn.executescript(_SCHEMA))
        return cls(store)

    async def get(self, command_id: int) -> JournalEntry | None:
        def get(conn: sqlite3.Connection) -> JournalEntry | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM command_journal WHERE command_id = ?", (command_id,)
            ).fetchone()
            return None if row is None else _entry(row)

        return await self._store.run(get)

    async def receive(
        self, command_id: int, name: str, parameters: dict[str, Any], result_timeout_s: float
    ) -> JournalEntry:
        """Record an offered command as received (a known id keeps its row); returns the row."""
        now = time.time_ns()

        def receive(conn: sqlite3.Connection) -> JournalEntry:
            with conn:
                conn.execute(
                    "INSERT OR IGNORE INTO command_journal"
                    " (command_id, name, parameters, result_timeout_s, state, change_time_ns)"
                    " VALUES (?, ?, ?, ?, 'received', ?)",
                    (command_id, name, json.dumps(parameters), result_timeout_s, now),
                )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM command_journal WHERE command_id = ?", (command_id,)
            ).fetchone()
            return _entry(row)

        return await self._store.run(receive)

    async def _move(self, command_id: int, sql: str, *args: Any) -> bool:
        def move(conn: sqlite3.Connection) -> bool:
            with conn:
                cursor = conn.execute(sql, (*args, time.time_ns(), command_id))
            return cursor.rowcount == 1

        return await self._store.run(move)

    async def start(self, command_id: int) -> bool:
        """received -> running, committed before the handler starts; False if the row was not received."""
        return await self._move(
            command_id,
            "UPDATE command_journal SET state = 'running', change_time_ns = ?"
            " WHERE command_id = ? AND state = 'received'",
        )

    async def finish(self, command_id: int, outcome: Outcome) -> bool:
        """received or running -> finished with `outcome`; False if the row had finished or was withdrawn."""
        return await self._move(
            command_id,
            "UPDATE command_journal SET state = 'finished', succeeded = ?, result = ?, error = ?,"
            " finish_time_ns = ?, reported = 0, change_time_ns = ?"
            " WHERE command_id = ? AND state IN ('received', 'running')",
            int(outcome.succeeded), json.dumps(outcome.result), outcome.error, outcome.finish_time_ns,
        )  # fmt: skip

    async def withdraw(self, command_id: int) -> bool:
        """received -> withdrawn: it will never run. False if the row was not received."""
        return await self._move(
            command_id,
            "UPDATE command_journal SET state = 'withdrawn', change_time_ns = ?"
            " WHERE command_id = ? AND state = 'received'",
        )

    async def mark_reported(self, command_id: int) -> bool:
        """The service stored the result: the row may be pruned."""
        return await self._move(
            command_id,
            "UPDATE command_journal SET reported = 1, change_time_ns = ?"
            " WHERE command_id = ? AND state = 'finished'",
        )

    async def unreported(self) -> list[JournalEntry]:
        """Finished commands whose result the service has not confirmed, oldest first."""

        def unreported(conn: sqlite3.Connection) -> list[JournalEntry]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM command_journal"
                " WHERE state = 'finished' AND reported = 0 ORDER BY command_id"
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._store.run(unreported)

    async def recover_interrupted(self, message: str) -> list[JournalEntry]:
        """Finish every `running` row as FAILED with `message`: call once at start, before any run,
        so such rows are the previous process's. Returns them as they are now."""
        now = time.time_ns()

        def recover(conn: sqlite3.Connection) -> list[JournalEntry]:
            with conn:
                ids = [
                    row[0]
                    for row in conn.execute("SELECT command_id FROM command_journal WHERE state = 'running'")
                ]
                conn.execute(
                    "UPDATE command_journal SET state = 'finished', succeeded = 0, result = '{}', error = ?,"
                    " finish_time_ns = ?, reported = 0, change_time_ns = ? WHERE state = 'running'",
                    (message, now, now),
                )
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM command_journal WHERE command_id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._store.run(recover)

    async def prune(self, now_ns: int | None = None) -> int:
        """Delete rows nobody needs any more (see the module doc); returns how many."""
        before = (now_ns if now_ns is not None else time.time_ns()) - PRUNE_AFTER_NS

        def prune(conn: sqlite3.Connection) -> int:
            with conn:
                cursor = conn.execute(
                    "DELETE FROM command_journal WHERE change_time_ns < ?"
                    " AND (reported = 1 OR state IN ('withdrawn', 'received'))",
                    (before,),
                )
            return cursor.rowcount

        return await self._store.run(prune)
