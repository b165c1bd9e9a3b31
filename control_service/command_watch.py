"""WatchCommands' watchers and hub: the generic change hub (change_watch.py) on commands."""

from __future__ import annotations

import asyncpg

from control_service.change_watch import ChangeHub, Watcher
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage import command_signal, commands
from sensormesh_core.storage.commands import CommandRecord
from sensormesh_core.storage.listener import Connect

CommandWatcher = Watcher[CommandRecord]


def command_watcher(
    device_id: str | None, command_id: int | None, scope: DeviceScope | None
) -> CommandWatcher:
    """A watcher of one device's commands (None: every device in scope), or of one command."""

    def wants(device: str, ident: int) -> bool:
        if command_id is not None:
            return ident == command_id
        return device_id is None or device == device_id

    return Watcher(
        wants=wants,
        row_id=lambda c: c.command_id,
        version=lambda c: (c.state, c.delivery_count, c.result is not None),
        scope=scope,
        follows=frozenset({command_id}) if command_id is not None else frozenset(),
    )


def command_hub(pool: asyncpg.Pool, connect: Connect, *, max_watchers: int) -> ChangeHub[CommandRecord]:
    return ChangeHub(
        pool,
        connect,
        channel=command_signal.CHANNEL,
        id_key="c",
        read_many=commands.get_many,
        max_watchers=max_watchers,
        what="command",
    )
