"""One alert evaluator across control replicas: a lease in PostgreSQL, with a fencing epoch.

Every control process competes for a session advisory lock on a connection of its own. The
holder is the leader: it bumps the epoch in `alert_leader` and evaluates; the others retry
every `retry` seconds. When the leader dies, its connection closes, the lock is released,
and a standby takes over within `retry` seconds, resuming from the cursors the old leader
committed (evaluation state lives in the database, not in a process).

A process can lose the lock without knowing it at once (its lock connection cut while its
pool works on). The epoch fences it: every evaluation transaction reads the epoch FOR SHARE
and stops if it is not its own, and a new leader's UPDATE of the epoch waits for the old
leader's open transactions, so their writes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from sensormesh_core.storage.listener import Connect

log = logging.getLogger(__name__)

LOCK_KEY = 0x5E45_A1E7  # the evaluators' advisory lock
_GUARD = "SELECT epoch FROM alert_leader WHERE id = 1 FOR SHARE"


class LeadershipLost(Exception):
    """Another process has become the alert evaluator since this one's epoch."""


async def check_epoch(conn: asyncpg.Connection, epoch: int) -> None:
    """Inside an evaluation transaction: raise LeadershipLost unless `epoch` is still current."""
    ensure_current(await conn.fetchval(_GUARD), epoch)


def ensure_current(current: int | None, epoch: int) -> None:
    """Raise LeadershipLost unless `current` (the epoch read under the lock) is `epoch`."""
    if current != epoch:
        raise LeadershipLost(f"epoch {epoch} is over; the leader is at {current}")


class Leadership:
    """Runs `lead(epoch)` while this process holds the lease; competes again when it ends."""

    def __init__(self, connect: Connect, *, retry: float, name: str | None = None) -> None:
        self._connect = connect
        self._retry = retry
        self.name = name or f"{socket.gethostname()}:{id(self):x}"
        self.epoch: int | None = None
        self.elected = asyncio.Event()

    async def run(self, lead: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        """Compete for the lease forever (until cancelled); while held, run `lead`."""
        while True:
            try:
                conn = await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("event=alert_leader_connect_failed error=%r", exc)
                await asyncio.sleep(self._retry)
                continue
            try:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                    await self._hold(conn, lead)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, LeadershipLost) as exc:
                log.warning(
                    "event=alert_leadership_ended name=%s epoch=%s error=%r", self.name, self.epoch, exc
                )
            finally:
                self.epoch = None
                self.elected.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(self._retry)

    async def _hold(self, conn: asyncpg.Connection, lead: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        epoch = await conn.fetchval(
            "UPDATE alert_leader SET epoch = epoch + 1, holder = $1, since = now() WHERE id = 1 RETURNING epoch",
            self.name,
        )
        self.epoch = int(epoch)
        self.elected.set()
        log.info("event=alert_leader_elected name=%s epoch=%d", self.name, self.epoch)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def terminated(_conn: asyncpg.Connection) -> None:
            if not lost.done():
                lost.set_result(None)

        conn.add_termination_listener(terminated)
        work = asyncio.create_task(lead(self.epoch), name="alert-evaluator")
        watch = asyncio.create_task(self._watch(conn, lost), name="alert-lease")
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (work, watch):
                task.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Future[None]) -> None:
        """Return when the lock's connection is gone (checked every `retry` seconds too)."""
        while not lost.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(lost), self._retry)
            if not lost.done():
                await conn.fetchval("SELECT 1")  # raises when the connection died silently
        raise LeadershipLost("the lease's connection closed")
