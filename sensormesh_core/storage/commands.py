"""Commands in the database: their lifecycle, one statement per transition.

This module is the operator's side and time (send, read, cancel, expire, prune); the
device's side (what it understands, offers, receipts, results) is `command_offers`.

Every transition is a single conditional UPDATE (`... WHERE state IN (...)`)
that also signals the change (`command_signal`), so two replicas racing over
one command (a cancel and a receipt, two expiry sweeps) cannot both win: the
loser's UPDATE matches no row, and it reads what the winner left. States are
the contract's CommandState numbers.

The services only translate to and from the contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from sensormesh_core.command_states import (
    CANCELED,
    DELIVERED,
    EXPIRED,
    QUEUED,
    SENT,
    STATE_NAMES,
    TIMED_OUT,
    UNFINISHED,
)
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import AlreadyExists, FailedPrecondition, NotFound
from sensormesh_core.storage.command_signal import NOTIFY_SQL
from sensormesh_core.storage.registry import IN_SCOPE, scope_parameters

COLUMNS = (
    "c.command_id, c.device_id, c.name, c.parameters, c.state, c.creator, c.request_id, c.create_time, "
    "c.expire_time, c.result_timeout, c.send_time, c.deliver_time, c.finish_time, c.result, "
    "c.error_message, c.delivery_count, c.trace_context"
)
# Unfinished (QUEUED, SENT, DELIVERED), as the partial index `commands_unfinished` is defined:
# written the same way, so the planner can use the index.
UNFINISHED_SQL = "state IN (1, 2, 3)"
assert UNFINISHED == (1, 2, 3)
# The same columns from a data-modifying CTE named `c`, with the signal of each changed row.
CHANGED = f"SELECT {COLUMNS}, {NOTIFY_SQL} FROM c"


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A row of `commands`."""

    command_id: int
    device_id: str
    name: str
    parameters: dict[str, Any]
    state: int
    creator: str
    request_id: str
    create_time: datetime
    expire_time: datetime
    result_timeout: timedelta
    send_time: datetime | None
    deliver_time: datetime | None
    finish_time: datetime | None
    result: dict[str, Any] | None
    error_message: str
    delivery_count: int
    trace_context: str = ""

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CommandRecord:
        return cls(
            command_id=row["command_id"],
            device_id=row["device_id"],
            name=row["name"],
            parameters=_json(row["parameters"]) or {},
            state=row["state"],
            creator=row["creator"],
            request_id=row["request_id"],
            create_time=row["create_time"],
            expire_time=row["expire_time"],
            result_timeout=row["result_timeout"],
            send_time=row["send_time"],
            deliver_time=row["deliver_time"],
            finish_time=row["finish_time"],
            result=_json(row["result"]),
            error_message=row["error_message"],
            delivery_count=row["delivery_count"],
            trace_context=row["trace_context"],
        )

    @property
    def finished(self) -> bool:
        return self.state not in UNFINISHED

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class NewCommand:
    """What SendCommand stores (checked by the caller against the device's declaration)."""

    device_id: str
    name: str
    parameters: dict[str, Any]
    creator: str
    request_id: str
    expire_time: datetime
    result_timeout: timedelta
    trace_context: str = ""


# -- the operator's side ----------------------------------------------------------------------------


async def insert(conn: asyncpg.Connection, new: NewCommand) -> tuple[CommandRecord, bool]:
    """Store `new` QUEUED and signal it; returns it and True. With a request id already used
    for the device: the command that id made and False (AlreadyExists if that one is a
    different command)."""
    row = await conn.fetchrow(
        "WITH c AS (INSERT INTO commands (device_id, name, parameters, creator, request_id, "
        "expire_time, result_timeout, trace_context) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8) "
        "ON CONFLICT (device_id, request_id) WHERE request_id <> '' DO NOTHING RETURNING *) " + CHANGED,
        new.device_id,
        new.name,
        json.dumps(new.parameters),
        new.creator,
        new.request_id,
        new.expire_time,
        new.result_timeout,
        new.trace_context,
    )
    if row is not None:
        return CommandRecord.from_row(row), True
    earlier = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM commands c WHERE c.device_id = $1 AND c.request_id = $2",
        new.device_id,
        new.request_id,
    )
    if earlier is None:  # deleted by retention between the two statements
        raise AlreadyExists(f"request_id {new.request_id!r} was used for a command that no longer exists")
    record = CommandRecord.from_row(earlier)
    if record.name != new.name or record.parameters != new.parameters:
        raise AlreadyExists(
            f"request_id {new.request_id!r} made command {record.command_id} ({record.name}) for device "
            f"{new.device_id!r}; a different command needs another request_id",
            reason="REQUEST_ID_REUSED",
        )
    return record, False


async def get(conn: asyncpg.Connection, device_id: str, command_id: int) -> CommandRecord:
    """The command; NotFound unless it exists and is `device_id`'s."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM commands c WHERE c.command_id = $1 AND c.device_id = $2",
        command_id,
        device_id,
    )
    if row is None:
        raise NotFound(f"command {command_id} of device {device_id!r} does not exist")
    return CommandRecord.from_row(row)


async def list_commands(
    conn: asyncpg.Connection,
    *,
    device_id: str | None,
    states: Sequence[int],
    before_id: int | None,
    limit: int,
    scope: DeviceScope | None,
) -> list[CommandRecord]:
    """Up to `limit` commands with ids below `before_id`, newest first, of one device (or every
    device in `scope`), in `states` (empty: any)."""
    ids, labels = scope_parameters(scope)
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM commands c JOIN devices d ON d.device_id = c.device_id "
        "WHERE ($1::text IS NULL OR c.device_id = $1) "
        "AND (cardinality($2::smallint[]) = 0 OR c.state = ANY($2::smallint[])) "
        "AND ($3::bigint IS NULL OR c.command_id < $3) "
        f"AND {IN_SCOPE.format(ids='$5', labels='$6')} "
        "ORDER BY c.command_id DESC LIMIT $4",
        device_id,
        list(states),
        before_id,
        limit,
        ids,
        labels,
    )
    return [CommandRecord.from_row(row) for row in rows]


async def cancel(conn: asyncpg.Connection, device_id: str, command_id: int, actor: str) -> CommandRecord:
    """Cancel a QUEUED or SENT command. A CANCELED one is returned as it is; NotFound, or
    FailedPrecondition once the device has it or it finished."""
    row = await conn.fetchrow(
        "WITH c AS (UPDATE commands SET state = $3, finish_time = now(), error_message = $4 "
        "WHERE command_id = $1 AND device_id = $2 AND state = ANY($5::smallint[]) RETURNING *) " + CHANGED,
        command_id,
        device_id,
        CANCELED,
        f"canceled by {actor}",
        [QUEUED, SENT],
    )
    if row is not None:
        return CommandRecord.from_row(row)
    record = await get(conn, device_id, command_id)
    if record.state == CANCELED:
        return record
    raise FailedPrecondition(
        f"command {command_id} is {record.state_name}: only QUEUED or SENT commands can be canceled "
        "(the device has it, or it has finished)",
        reason="COMMAND_NOT_CANCELABLE",
    )


# -- time -------------------------------------------------------------------------------------------


async def end(conn: asyncpg.Connection, record: CommandRecord, state: int, why: str) -> CommandRecord | None:
    """Move `record` to the final `state`, if it is still in the state it was read in."""
    row = await conn.fetchrow(
        "WITH c AS (UPDATE commands SET state = $2, finish_time = now(), error_message = $3 "
        "WHERE command_id = $1 AND state = $4 RETURNING *) " + CHANGED,
        record.command_id,
        state,
        why,
        record.state,
    )
    return None if row is None else CommandRecord.from_row(row)


async def end_overdue(conn: asyncpg.Connection) -> list[CommandRecord]:
    """QUEUED and SENT commands past their expiry become EXPIRED; DELIVERED ones without a
    result within their timeout become TIMED_OUT. Safe to run on every replica at once."""
    rows = await conn.fetch(
        "WITH c AS (UPDATE commands SET finish_time = now(), "
        "state = CASE WHEN state = $1 THEN $2::smallint ELSE $3::smallint END, "
        "error_message = CASE WHEN state = $1 "
        "THEN 'no result within ' || round(extract(epoch FROM result_timeout))::bigint || ' s of delivery' "
        "ELSE 'expired before delivery' END "
        f"WHERE {UNFINISHED_SQL} AND CASE WHEN state = $1 "
        "THEN deliver_time + result_timeout <= now() ELSE expire_time <= now() END RETURNING *) " + CHANGED,
        DELIVERED,
        TIMED_OUT,
        EXPIRED,
    )
    return [CommandRecord.from_row(row) for row in rows]


async def prune(conn: asyncpg.Connection, retention: timedelta) -> int:
    """Delete commands that finished more than `retention` ago; returns how many."""
    status = await conn.execute(
        "DELETE FROM commands WHERE finish_time IS NOT NULL AND finish_time < now() - $1::interval",
        retention,
    )
    return int(status.split()[-1])


async def get_many(
    conn: asyncpg.Connection, command_ids: Sequence[int]
) -> list[tuple[CommandRecord, dict[str, str]]]:
    """The commands with these ids that still exist, each with its device's labels (for scopes)."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS}, d.labels FROM commands c JOIN devices d ON d.device_id = c.device_id "
        "WHERE c.command_id = ANY($1::bigint[]) ORDER BY c.command_id",
        list(command_ids),
    )
    return [(CommandRecord.from_row(row), _json(row["labels"]) or {}) for row in rows]
