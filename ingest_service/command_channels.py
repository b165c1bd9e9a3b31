"""The command channels open in this ingest process, and what wakes them.

A command is stored by a control-service replica; the device it is for may be
connected to any ingest replica. Each ingest process LISTENs once for the
command signal (`sensormesh_core.storage.command_signal`) and wakes the
channels of the command's device, if it has any open: they read the device's
pending commands from the database and offer them. After the LISTEN
connection comes back from an outage, every channel looks again, since
signals sent meanwhile were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from sensormesh_core.command_states import QUEUED
from sensormesh_core.storage import command_signal
from sensormesh_core.storage.listener import Connect, Listener

log = logging.getLogger(__name__)


class CommandChannels:
    """Device id -> the wake-up events of its open channels here."""

    def __init__(self, connect: Connect) -> None:
        self._open: dict[str, set[asyncio.Event]] = {}
        self._listener = Listener(
            connect, command_signal.CHANNEL, self._on_payload, on_reconnect=self._wake_all
        )

    @property
    def open_count(self) -> int:
        return sum(len(events) for events in self._open.values())

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    @contextlib.contextmanager
    def register(self, device_id: str) -> Iterator[asyncio.Event]:
        """While the block runs, the event is set whenever the device may have a new command."""
        event = asyncio.Event()
        self._open.setdefault(device_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._open.get(device_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._open[device_id]

    def _on_payload(self, payload: str) -> None:
        try:
            changed = command_signal.decode(payload)
        except ValueError:
            log.warning("event=command_signal_malformed payload=%r", payload[:200])
            return
        if changed.state != QUEUED:
            return  # only a new command is news to a channel; the rest it learns on receipt
        for event in self._open.get(changed.device_id, ()):
            event.set()

    async def _wake_all(self) -> None:
        for events in self._open.values():
            for event in events:
                event.set()
