"""Alert rules in the database: the contract's AlertRule, encoded, beside what queries filter on.

Every change signals `sensormesh_alert_rules` in its transaction, so every evaluator (the
leader, and a standby about to become one) reloads its rules when the change commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sensormesh.v1 import alert_pb2

from sensormesh_core.errors import AlreadyExists, NotFound

CHANNEL = "sensormesh_alert_rules"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', $1)"
_COLUMNS = "rule_id, rule, disabled, creator, create_time, update_time"


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A row of `alert_rules`: the rule with its output fields filled in."""

    rule: alert_pb2.AlertRule

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredRule:
        rule = alert_pb2.AlertRule.FromString(row["rule"])
        rule.rule_id = row["rule_id"]
        rule.disabled = row["disabled"]
        rule.creator = row["creator"]
        rule.create_time.FromDatetime(row["create_time"])
        rule.update_time.FromDatetime(row["update_time"])
        return cls(rule)


def _encoded(rule: alert_pb2.AlertRule) -> bytes:
    """The rule without its output fields (the columns hold those)."""
    stored = alert_pb2.AlertRule()
    stored.CopyFrom(rule)
    for field in ("create_time", "update_time", "creator"):
        stored.ClearField(field)
    if not stored.display_name:
        stored.display_name = rule.rule_id
    return stored.SerializeToString()


async def create(conn: asyncpg.Connection, rule: alert_pb2.AlertRule, creator: str) -> StoredRule:
    """Store a new rule; AlreadyExists if its id is taken."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO alert_rules (rule_id, rule, disabled, creator) VALUES ($1, $2, $3, $4) "
                f"RETURNING {_COLUMNS}",
                rule.rule_id,
                _encoded(rule),
                rule.disabled,
                creator,
            )
            await conn.execute(_NOTIFY, rule.rule_id)
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"alert rule {rule.rule_id!r} already exists") from exc
    assert row is not None
    return StoredRule.from_row(row)


async def get(conn: asyncpg.Connection, rule_id: str) -> StoredRule:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM alert_rules WHERE rule_id = $1", rule_id)
    if row is None:
        raise NotFound(f"alert rule {rule_id!r} does not exist")
    return StoredRule.from_row(row)


async def list_rules(conn: asyncpg.Connection, *, after: str | None, limit: int) -> list[StoredRule]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM alert_rules WHERE ($1::text IS NULL OR rule_id > $1) ORDER BY rule_id LIMIT $2",
        after,
        limit,
    )
    return [StoredRule.from_row(row) for row in rows]


async def all_rules(conn: asyncpg.Connection) -> list[StoredRule]:
    """Every rule, for the evaluator."""
    return [StoredRule.from_row(row) for row in await conn.fetch(f"SELECT {_COLUMNS} FROM alert_rules")]


async def replace(conn: asyncpg.Connection, rule: alert_pb2.AlertRule) -> StoredRule:
    """Store `rule` (all of it) in place of the rule with its id; NotFound if there is none."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE alert_rules SET rule = $2, disabled = $3, update_time = now() WHERE rule_id = $1 "
            f"RETURNING {_COLUMNS}",
            rule.rule_id,
            _encoded(rule),
            rule.disabled,
        )
        if row is None:
            raise NotFound(f"alert rule {rule.rule_id!r} does not exist")
        await conn.execute(_NOTIFY, rule.rule_id)
    return StoredRule.from_row(row)


async def delete(conn: asyncpg.Connection, rule_id: str) -> datetime:
    """Delete the rule and what the evaluator remembered of it; NotFound if there is none.
    The caller clears its active alerts in the same transaction."""
    deleted: datetime | None = await conn.fetchval(
        "DELETE FROM alert_rules WHERE rule_id = $1 RETURNING now()", rule_id
    )
    if deleted is None:
        raise NotFound(f"alert rule {rule_id!r} does not exist")
    await conn.execute("DELETE FROM alert_series_states WHERE rule_id = $1", rule_id)
    await conn.execute(_NOTIFY, rule_id)
    return deleted
