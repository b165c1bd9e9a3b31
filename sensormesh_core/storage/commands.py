"""Commands in the database: their lifecycle, one statement per transition.

Every transition is a single conditional UPDATE (`... WHERE state IN (...)`)
that also signals the change (`command_signal`), so two replicas racing over
one command (a cancel and a receipt, two expiry sweeps) cannot both win: the
loser's UPDATE matches no row, and it reads what the winner left. States are
the contract's CommandState numbers.

The operator's side (send, cancel, list) and the device's side (pending
offers, receipt, result) both live here, because they are two views of one
row; the services only translate to and from the contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sensormesh.v1 import command_delivery_pb2

from sensormesh_core.command_states import (
    CANCELED,
    DELIVERED,
    EXPIRED,
    FAILED,
    QUEUED,
    SENT,
    STATE_NAMES,
    SUCCEEDED,
    TIMED_OUT,
    UNFINISHED,
)
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from sensormesh_core.storage.command_signal import NOTIFY_SQL
from sensormesh_core.storage.registry import IN_SCOPE, scope_parameters

COLUMNS = (
    "c.command_id, c.device_id, c.name, c.parameters, c.state, c.creator, c.request_id, c.create_time, "
    "c.expire_time, c.result_timeout, c.send_time, c.deliver_time, c.finish_time, c.result, "
    "c.error_message, c.delivery_count, c.trace_context"
)
# Unfinished (QUEUED, SENT, DELIVERED), as the partial index `commands_unfinished` is defined:
# written the same way, so the planner can use the index.
_UNFINISHED_SQL = "state IN (1, 2, 3)"
assert UNFINISHED == (1, 2, 3)
# The same columns from a data-modifying CTE named `c`, with the signal of each changed row.
_CHANGED = f"SELECT {COLUMNS}, {NOTIFY_SQL} FROM c"


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
        "ON CONFLICT (device_id, request_id) WHERE request_id <> '' DO NOTHING RETURNING *) " + _CHANGED,
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
        "WHERE command_id = $1 AND device_id = $2 AND state = ANY($5::smallint[]) RETURNING *) " + _CHANGED,
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


# -- the device's side ------------------------------------------------------------------------------


async def advertise(
    conn: asyncpg.Connection, device_id: str, specs: Sequence[command_delivery_pb2.CommandSpec]
) -> None:
    """Replace what the device understands with `specs`."""
    async with conn.transaction():
        await conn.execute("DELETE FROM device_commands WHERE device_id = $1", device_id)
        await conn.executemany(
            "INSERT INTO device_commands (device_id, name, spec) VALUES ($1, $2, $3)",
            [(device_id, spec.name, spec.SerializeToString()) for spec in specs],
        )


async def advertised(conn: asyncpg.Connection, device_id: str) -> dict[str, command_delivery_pb2.CommandSpec]:
    """What the device last advertised, by command name (empty if it never connected)."""
    rows = await conn.fetch("SELECT name, spec FROM device_commands WHERE device_id = $1", device_id)
    return {row["name"]: command_delivery_pb2.CommandSpec.FromString(row["spec"]) for row in rows}


async def offers(
    conn: asyncpg.Connection, device_id: str, offered: Sequence[int], limit: int
) -> list[CommandRecord]:
    """The device's unfinished commands not in `offered`, in order, to offer on its channel
    (a set, not an id cursor: ids are taken in one order and may commit in another).
    QUEUED and SENT ones not yet expired become SENT (counted); DELIVERED ones are offered
    again unchanged (the device answers with its receipt again, or the result it kept)."""
    rows = await conn.fetch(
        "WITH due AS (SELECT command_id FROM commands WHERE device_id = $1 AND command_id <> ALL($2::bigint[]) "
        f"AND {_UNFINISHED_SQL} AND (state = $4 OR expire_time > now()) "
        "ORDER BY command_id LIMIT $3), "
        "c AS (UPDATE commands AS u SET state = $5, send_time = now(), delivery_count = delivery_count + 1 "
        "FROM due WHERE u.command_id = due.command_id AND u.state <> $4 RETURNING u.*) "
        f"{_CHANGED} UNION ALL SELECT {COLUMNS}, NULL FROM commands c JOIN due USING (command_id) "
        "WHERE c.state = $4 ORDER BY command_id",
        device_id,
        list(offered),
        limit,
        DELIVERED,
        SENT,
    )
    return [CommandRecord.from_row(row) for row in rows]


async def _owned(conn: asyncpg.Connection, device_id: str, command_id: int) -> CommandRecord:
    """The command if it is `device_id`'s; PermissionDenied otherwise (existing or not)."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM commands c WHERE c.command_id = $1", command_id)
    if row is None or row["device_id"] != device_id:
        raise PermissionDenied(
            f"command {command_id} is not device {device_id!r}'s", reason="COMMAND_OF_ANOTHER_DEVICE"
        )
    return CommandRecord.from_row(row)


async def confirm_receipt(
    conn: asyncpg.Connection, device_id: str, command_id: int
) -> tuple[CommandRecord, bool]:
    """The device has the command: SENT (or QUEUED) and not expired becomes DELIVERED.

    Returns the command and whether this call delivered it. The record says what the
    device must do: run it if DELIVERED; otherwise it ended meanwhile (canceled, or
    expired: made EXPIRED here if its time passed) and must not run. PermissionDenied for
    a command that is not the device's."""
    row = await conn.fetchrow(
        "WITH c AS (UPDATE commands SET state = $3, deliver_time = now() WHERE command_id = $1 "
        "AND device_id = $2 AND state = ANY($4::smallint[]) AND expire_time > now() RETURNING *) " + _CHANGED,
        command_id,
        device_id,
        DELIVERED,
        [QUEUED, SENT],
    )
    if row is not None:
        return CommandRecord.from_row(row), True
    record = await _owned(conn, device_id, command_id)
    if record.state in (QUEUED, SENT):  # its time passed: it ends now, not at the next sweep
        expired = await _end(conn, record, EXPIRED, "expired before delivery")
        return expired or await _owned(conn, device_id, command_id), expired is not None
    return record, False


async def store_result(
    conn: asyncpg.Connection,
    device_id: str,
    command_id: int,
    *,
    succeeded: bool,
    result: dict[str, Any] | None,
    error_message: str,
) -> tuple[CommandRecord, bool]:
    """Record what came of a DELIVERED command (SUCCEEDED or FAILED); returns the command and
    whether this call finished it. A result after the timeout is kept beside TIMED_OUT; one
    for a finished command changes nothing. PermissionDenied for a command that is not the
    device's."""
    encoded = None if result is None else json.dumps(result)
    row = await conn.fetchrow(
        "WITH c AS (UPDATE commands SET state = $3, finish_time = now(), result = $4::jsonb, "
        "error_message = $5 WHERE command_id = $1 AND device_id = $2 AND state = $6 RETURNING *) " + _CHANGED,
        command_id,
        device_id,
        SUCCEEDED if succeeded else FAILED,
        encoded,
        error_message,
        DELIVERED,
    )
    if row is not None:
        return CommandRecord.from_row(row), True
    record = await _owned(conn, device_id, command_id)
    if record.state == TIMED_OUT and record.result is None:
        late = f"result arrived after the timeout: {'succeeded' if succeeded else error_message}"
        row = await conn.fetchrow(
            f"UPDATE commands c SET result = $2::jsonb, error_message = $3 WHERE command_id = $1 "
            f"AND result IS NULL RETURNING {COLUMNS}",
            command_id,
            encoded,
            late,
        )
        if row is not None:
            return CommandRecord.from_row(row), False
    return record, False


# -- time -------------------------------------------------------------------------------------------


async def _end(conn: asyncpg.Connection, record: CommandRecord, state: int, why: str) -> CommandRecord | None:
    row = await conn.fetchrow(
        "WITH c AS (UPDATE commands SET state = $2, finish_time = now(), error_message = $3 "
        "WHERE command_id = $1 AND state = $4 RETURNING *) " + _CHANGED,
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
        f"WHERE {_UNFINISHED_SQL} AND CASE WHEN state = $1 "
        "THEN deliver_time + result_timeout <= now() ELSE expire_time <= now() END RETURNING *) " + _CHANGED,
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
