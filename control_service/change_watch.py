"""Watch streams' fan-out (WatchCommands, WatchAlerts): one LISTEN per process, each changed
row read once, offered to every watcher.

Whichever process changes a row signals it with its id and device. The hub collects the ids
that some watcher here may care about, reads them back in one query (with their device's
labels, so a scoped key's watch is filtered without another read), and offers each row to
every watcher. Offering never waits: a watcher whose queue is full is marked behind and its
stream ends (RESOURCE_EXHAUSTED), so one slow client cannot hold the others up.

Signals lost while the LISTEN connection was down are made good for watchers that follow
particular rows (`follows`, e.g. `sensormesh commands send --wait`): after a reconnect those
rows are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import asyncpg

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import ResourceExhausted
from sensormesh_core.storage.listener import Connect, Listener

log = logging.getLogger(__name__)

QUEUE_SIZE = 1_000


class Row(Protocol):
    """What a watched row must tell: its device."""

    @property
    def device_id(self) -> str: ...


R = TypeVar("R", bound=Row)
ReadMany = Callable[[asyncpg.Connection, Sequence[int]], Awaitable[list[tuple[R, dict[str, str]]]]]


@dataclass(eq=False)
class Watcher(Generic[R]):
    """One watch stream: which rows it wants, and what waits to be sent to it."""

    wants: Callable[[str, int], bool]  # (device_id, row id) -> wanted
    row_id: Callable[[R], int]
    version: Callable[[R], Hashable]  # rows are sent again only when this changes
    scope: DeviceScope | None
    follows: frozenset[int] = frozenset()  # rows read again after a reconnect
    accepts: Callable[[R], bool] = lambda _row: True
    queue: asyncio.Queue[R] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    behind: bool = False
    _seen: dict[int, Hashable] = field(default_factory=dict)

    def offer(self, row: R, labels: Mapping[str, str]) -> None:
        """Queue `row` if it is wanted, visible and news to this watcher; never waits."""
        ident = self.row_id(row)
        if not self.wants(row.device_id, ident) or not self.accepts(row):
            return
        if self.scope is not None and not self.scope.allows(row.device_id, labels):
            return
        if self._seen.get(ident) == self.version(row):
            return
        self._seen[ident] = self.version(row)
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.behind = True  # the stream notices on its next read, and ends

    def seen(self, row: R) -> None:
        """`row` was sent to the client outside the queue (a first answer)."""
        self._seen[self.row_id(row)] = self.version(row)


class ChangeHub(Generic[R]):
    """The watchers of one kind of row in this process, fed from its change signal."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Connect,
        *,
        channel: str,
        id_key: str,
        read_many: ReadMany[R],
        max_watchers: int,
        what: str,
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._id_key = id_key
        self._read_many = read_many
        self._max_watchers = max_watchers
        self._what = what
        self._watchers: set[Watcher[R]] = set()
        self._changed: set[int] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._listener = Listener(connect, channel, self._on_payload, on_reconnect=self._resync)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def start(self) -> None:
        await self._listener.start()
        self._worker = asyncio.create_task(self._read_changes(), name=f"watch-{self._channel}")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._listener.stop()

    def subscribe(self, watcher: Watcher[R]) -> None:
        """Register `watcher` (before reading anything it must not miss changes of)."""
        if len(self._watchers) >= self._max_watchers:
            raise ResourceExhausted(
                f"this control process serves its maximum of {self._max_watchers} {self._what} watches; "
                "retry later or through another replica"
            )
        self._watchers.add(watcher)

    def unsubscribe(self, watcher: Watcher[R]) -> None:
        self._watchers.discard(watcher)

    def _on_payload(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            ident, device_id = int(data[self._id_key]), str(data["d"])
        except (ValueError, KeyError, TypeError):
            log.warning("event=change_signal_malformed channel=%s payload=%r", self._channel, payload[:200])
            return
        if any(w.wants(device_id, ident) for w in self._watchers):
            self._changed.add(ident)
            self._wake.set()

    async def _resync(self) -> None:
        for watcher in self._watchers:
            self._changed.update(watcher.follows)
        self._wake.set()

    async def _read_changes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ids, self._changed = sorted(self._changed), set()
            if not ids:
                continue
            try:
                async with self._pool.acquire() as conn:
                    changed = await self._read_many(conn, ids)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "event=watch_read_failed channel=%s rows=%d error=%r", self._channel, len(ids), exc
                )
                self._changed.update(ids)  # again with the next signal or reconnect
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            for row, labels in changed:
                for watcher in list(self._watchers):
                    watcher.offer(row, labels)


async def changes(watcher: Watcher[R], heartbeat: float, what: str) -> AsyncIterator[R | None]:
    """The watcher's rows as they come; None for a heartbeat after `heartbeat` quiet seconds.
    Ends the stream with RESOURCE_EXHAUSTED once the watcher fell behind."""
    while True:
        row = None
        with contextlib.suppress(TimeoutError):
            row = await asyncio.wait_for(watcher.queue.get(), heartbeat)
        if watcher.behind:
            raise ResourceExhausted(
                f"this watch fell too far behind the changes; open it again and read the current state with {what}"
            )
        yield row
