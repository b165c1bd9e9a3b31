"""WatchCommands' fan-out: one LISTEN per process, each changed command read once.

Whichever process changes a command signals it (`command_signal`). The hub
collects the ids of changed commands that some watcher here may care about,
reads them back in one query (with their device's labels, so a scoped key's
watch can be filtered without another read), and offers each to every
watcher. Offering never waits: a watcher whose queue is full is marked
behind and its stream ends (RESOURCE_EXHAUSTED), so one slow client cannot
hold the others up.

Signals lost while the LISTEN connection was down are made good for watchers
of one command (what `sensormesh commands send --wait` uses): after a
reconnect their commands are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import ResourceExhausted
from sensormesh_core.storage import command_signal, commands
from sensormesh_core.storage.commands import CommandRecord
from sensormesh_core.storage.listener import Connect, Listener

log = logging.getLogger(__name__)

QUEUE_SIZE = 1_000


@dataclass(eq=False)
class CommandWatcher:
    """One WatchCommands stream: what it asked for, and what is waiting for it."""

    device_id: str | None  # None: every device in scope
    command_id: int | None
    scope: DeviceScope | None
    queue: asyncio.Queue[CommandRecord] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    behind: bool = False
    _seen: dict[int, tuple[int, int, bool]] = field(default_factory=dict)

    def wants(self, device_id: str, command_id: int) -> bool:
        if self.command_id is not None:
            return command_id == self.command_id
        return self.device_id is None or self.device_id == device_id

    def offer(self, record: CommandRecord, labels: Mapping[str, str]) -> None:
        """Queue `record` if it is wanted, visible and news to this watcher; never waits."""
        if not self.wants(record.device_id, record.command_id):
            return
        if self.scope is not None and not self.scope.allows(record.device_id, labels):
            return
        key = (record.state, record.delivery_count, record.result is not None)
        if self._seen.get(record.command_id) == key:
            return
        self._seen[record.command_id] = key
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.behind = True  # the stream notices on its next read, and ends

    def seen(self, record: CommandRecord) -> None:
        """`record` was sent to the client outside the queue (the first answer)."""
        self._seen[record.command_id] = (record.state, record.delivery_count, record.result is not None)


class CommandWatchHub:
    """The watchers of this process, fed from the command signal."""

    def __init__(self, pool: asyncpg.Pool, connect: Connect, *, max_watchers: int) -> None:
        self._pool = pool
        self._max_watchers = max_watchers
        self._watchers: set[CommandWatcher] = set()
        self._changed: set[int] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._listener = Listener(
            connect, command_signal.CHANNEL, self._on_payload, on_reconnect=self._resync
        )

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def start(self) -> None:
        await self._listener.start()
        self._worker = asyncio.create_task(self._read_changes(), name="command-watch")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._listener.stop()

    def subscribe(self, watcher: CommandWatcher) -> None:
        """Register `watcher` (before reading anything it must not miss changes of)."""
        if len(self._watchers) >= self._max_watchers:
            raise ResourceExhausted(
                f"this control process serves its maximum of {self._max_watchers} command watches; "
                "retry later or through another replica"
            )
        self._watchers.add(watcher)

    def unsubscribe(self, watcher: CommandWatcher) -> None:
        self._watchers.discard(watcher)

    def _on_payload(self, payload: str) -> None:
        try:
            changed = command_signal.decode(payload)
        except ValueError:
            log.warning("event=command_signal_malformed payload=%r", payload[:200])
            return
        if any(w.wants(changed.device_id, changed.command_id) for w in self._watchers):
            self._changed.add(changed.command_id)
            self._wake.set()

    async def _resync(self) -> None:
        self._changed.update(w.command_id for w in self._watchers if w.command_id is not None)
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
                    changed = await commands.get_many(conn, ids)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("event=command_watch_read_failed commands=%d error=%r", len(ids), exc)
                self._changed.update(ids)  # try again with the next signal or reconnect
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            for record, labels in changed:
                for watcher in list(self._watchers):
                    watcher.offer(record, labels)
