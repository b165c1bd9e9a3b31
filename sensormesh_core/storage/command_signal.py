"""The "a command changed" signal: from whichever process changed it to every other.

A command is sent through one control-service replica, and the device that
must receive it may be connected to any ingest replica; an operator watching
it may be on yet another control replica. PostgreSQL LISTEN/NOTIFY carries
the signal, so no broker of ours is needed: every statement that changes a
command's state notifies in the same transaction (commands are few, so the
commit-time lock that keeps NOTIFY off the readings' hot path costs nothing
here), and listeners hear it only once the change is committed.

A signal names the command, its device and its new state; listeners read the
row back. It is a hint: a listener that lost its connection re-reads what it
cares about after reconnecting (`sensormesh_core.storage.listener`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CHANNEL = "sensormesh_commands"

NOTIFY_SQL = f"pg_notify('{CHANNEL}', json_build_object('d', device_id, 'c', command_id, 's', state)::text)"
"""A select-list item that signals the row it is evaluated on (a changed row of `commands`)."""


@dataclass(frozen=True, slots=True)
class CommandChanged:
    """Command `command_id` of `device_id` is now in `state` (a CommandState number)."""

    device_id: str
    command_id: int
    state: int


def decode(payload: str) -> CommandChanged:
    """Parse a payload of the channel; raises ValueError on anything malformed."""
    try:
        data = json.loads(payload)
        device_id, command_id, state = data["d"], data["c"], data["s"]
        if not isinstance(device_id, str) or not isinstance(command_id, int) or not isinstance(state, int):
            raise TypeError("field types")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed command signal: {payload[:100]!r}") from exc
    return CommandChanged(device_id, command_id, state)
