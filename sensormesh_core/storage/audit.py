"""The audit log in the database: one row per audited call, read newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

MAX_MESSAGE_CHARS = 2000  # an error message is kept whole up to this; longer ones are cut


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What an audited call did; `event_id` and `event_time` are set by the database."""

    actor: str
    method: str
    resource: str
    outcome: str
    message: str = ""
    event_id: int = 0
    event_time: datetime | None = None


async def record(conn: asyncpg.Connection, entry: AuditEntry) -> None:
    """Append `entry` to the log."""
    await conn.execute(
        "INSERT INTO audit_events (actor, method, resource, outcome, message) VALUES ($1, $2, $3, $4, $5)",
        entry.actor,
        entry.method,
        entry.resource,
        entry.outcome,
        entry.message[:MAX_MESSAGE_CHARS],
    )


async def list_events(
    conn: asyncpg.Connection,
    *,
    before_id: int | None,
    limit: int,
    actor: str = "",
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> list[AuditEntry]:
    """Up to `limit` events with ids below `before_id`, newest first, filtered."""
    rows = await conn.fetch(
        "SELECT event_id, event_time, actor, method, resource, outcome, message FROM audit_events "
        "WHERE ($1::bigint IS NULL OR event_id < $1) AND ($2 = '' OR actor = $2) "
        "AND ($3::timestamptz IS NULL OR event_time >= $3) AND ($4::timestamptz IS NULL OR event_time < $4) "
        "ORDER BY event_id DESC LIMIT $5",
        before_id,
        actor,
        start_time,
        end_time,
        limit,
    )
    return [
        AuditEntry(
            actor=r["actor"],
            method=r["method"],
            resource=r["resource"],
            outcome=r["outcome"],
            message=r["message"],
            event_id=r["event_id"],
            event_time=r["event_time"],
        )
        for r in rows
    ]
