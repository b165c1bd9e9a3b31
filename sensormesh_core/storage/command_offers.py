"""The device's side of commands in the database: what a device understands, what to offer it,
its receipts and its results.

Each step is one conditional UPDATE that signals the change, like the operator's side
(`commands`): a receipt racing a cancel on another replica has exactly one winner, and the
device is told which (run it, or not). A device may only confirm or answer its own commands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from sensormesh.v1 import command_delivery_pb2

from sensormesh_core.command_states import DELIVERED, EXPIRED, FAILED, QUEUED, SENT, SUCCEEDED, TIMED_OUT
from sensormesh_core.errors import PermissionDenied
from sensormesh_core.storage.commands import CHANGED, COLUMNS, UNFINISHED_SQL, CommandRecord, end


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
        f"AND {UNFINISHED_SQL} AND (state = $4 OR expire_time > now()) "
        "ORDER BY command_id LIMIT $3), "
        "c AS (UPDATE commands AS u SET state = $5, send_time = now(), delivery_count = delivery_count + 1 "
        "FROM due WHERE u.command_id = due.command_id AND u.state <> $4 RETURNING u.*) "
        f"{CHANGED} UNION ALL SELECT {COLUMNS}, NULL FROM commands c JOIN due USING (command_id) "
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
        "AND device_id = $2 AND state = ANY($4::smallint[]) AND expire_time > now() RETURNING *) " + CHANGED,
        command_id,
        device_id,
        DELIVERED,
        [QUEUED, SENT],
    )
    if row is not None:
        return CommandRecord.from_row(row), True
    record = await _owned(conn, device_id, command_id)
    if record.state in (QUEUED, SENT):  # its time passed: it ends now, not at the next sweep
        expired = await end(conn, record, EXPIRED, "expired before delivery")
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
        "error_message = $5 WHERE command_id = $1 AND device_id = $2 AND state = $6 RETURNING *) " + CHANGED,
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
