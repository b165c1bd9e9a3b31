"""Alerts in the database: raised, counted, acknowledged, cleared; each change signalled, and
the ones people are told of queued in the outbox in the same transaction.

At most one alert per rule, device and sensor is active (a partial unique index), so two
evaluators racing (a failover) cannot raise the same alert twice: the second INSERT meets the
first's row and only adds to its count. Every change signals `sensormesh_alerts` in its
transaction (alerts change at the pace of batches, not readings); WatchAlerts reads the row back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sensormesh.v1 import alert_pb2

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.registry import IN_SCOPE, scope_parameters

CHANNEL = "sensormesh_alerts"
ACTIVE_UNACK: int = alert_pb2.ALERT_STATE_ACTIVE_UNACK
ACTIVE_ACK: int = alert_pb2.ALERT_STATE_ACTIVE_ACK
CLEARED_UNACK: int = alert_pb2.ALERT_STATE_CLEARED_UNACK
CLEARED_ACK: int = alert_pb2.ALERT_STATE_CLEARED_ACK
ACTIVE = (ACTIVE_UNACK, ACTIVE_ACK)
BY_RULE = "rule"

COLUMNS = (
    "a.alert_id, a.rule_id, a.device_id, a.sensor, a.quantity, a.severity, a.state, a.count, a.first_time, "
    "a.last_time, a.last_value, a.message, a.create_time, a.clear_time, a.cleared_by, a.acknowledge_time, "
    "a.acknowledged_by"
)
_NOTIFY = f"pg_notify('{CHANNEL}', json_build_object('a', alert_id, 'd', device_id, 's', state)::text)"
# The columns of a data-modifying CTE named `a`, with the signal of each changed row.
_CHANGED = f"SELECT {COLUMNS}, {_NOTIFY} FROM a"


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """What one alert is about: a rule, a device and a sensor ("" for a device-wide one)."""

    rule_id: str
    device_id: str
    sensor: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A row of `alerts`."""

    alert_id: int
    rule_id: str
    device_id: str
    sensor: str
    quantity: str
    severity: int
    state: int
    count: int
    first_time: datetime
    last_time: datetime
    last_value: float
    message: str
    create_time: datetime
    clear_time: datetime | None
    cleared_by: str
    acknowledge_time: datetime | None
    acknowledged_by: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AlertRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@dataclass(frozen=True, slots=True)
class Raise:
    """An alert to raise (or, if one is active for its key, to add to)."""

    key: SeriesKey
    quantity: str
    severity: int
    first_time: datetime
    last_time: datetime
    last_value: float
    count: int
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """What the outbox tells receivers besides the alert itself."""

    rule_name: str
    rule_description: str


# -- the evaluator's changes --------------------------------------------------------------------


async def raise_alert(
    conn: asyncpg.Connection, new: Raise, notice: Notice, receivers: Sequence[str]
) -> tuple[AlertRecord, bool]:
    """Raise `new`, or add its count to the alert already active for its key; returns the alert
    and whether it was raised now (then the receivers are told)."""
    row = await conn.fetchrow(
        "WITH a AS (INSERT INTO alerts (rule_id, device_id, sensor, quantity, severity, state, count, "
        "first_time, last_time, last_value, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (rule_id, device_id, sensor) WHERE state IN (1, 2) DO UPDATE SET "
        "count = alerts.count + EXCLUDED.count, last_time = EXCLUDED.last_time, "
        "last_value = EXCLUDED.last_value RETURNING *, xmax = 0 AS inserted) "
        f"SELECT {COLUMNS}, a.inserted, {_NOTIFY} FROM a",
        new.key.rule_id,
        new.key.device_id,
        new.key.sensor,
        new.quantity,
        new.severity,
        ACTIVE_UNACK,
        new.count,
        new.first_time,
        new.last_time,
        new.last_value,
        new.message,
    )
    assert row is not None
    record = AlertRecord.from_row(row)
    if row["inserted"]:
        await enqueue(conn, record, "raised", notice, receivers)
    return record, bool(row["inserted"])


async def add_met(
    conn: asyncpg.Connection, key: SeriesKey, count: int, last_time: datetime, last_value: float
) -> AlertRecord | None:
    """`count` more readings met the active alert's condition; None if none is active."""
    row = await conn.fetchrow(
        "WITH a AS (UPDATE alerts SET count = count + $4, last_time = greatest(last_time, $5), "
        "last_value = $6 WHERE rule_id = $1 AND device_id = $2 AND sensor = $3 AND state IN (1, 2) "
        f"RETURNING *) {_CHANGED}",
        key.rule_id,
        key.device_id,
        key.sensor,
        count,
        last_time,
        last_value,
    )
    return None if row is None else AlertRecord.from_row(row)


async def clear_active(
    conn: asyncpg.Connection,
    key: SeriesKey,
    by: str,
    notice: Notice,
    receivers: Sequence[str],
) -> AlertRecord | None:
    """Clear the active alert of `key` (its condition ended: `by` is "rule"); None if none is."""
    row = await conn.fetchrow(
        "WITH a AS (UPDATE alerts SET state = CASE WHEN state = $4 THEN $5::smallint ELSE $6::smallint END, "
        "clear_time = now(), cleared_by = $7 WHERE rule_id = $1 AND device_id = $2 AND sensor = $3 "
        f"AND state IN (1, 2) RETURNING *) {_CHANGED}",
        key.rule_id,
        key.device_id,
        key.sensor,
        ACTIVE_UNACK,
        CLEARED_UNACK,
        CLEARED_ACK,
        by,
    )
    if row is None:
        return None
    record = AlertRecord.from_row(row)
    await enqueue(conn, record, "cleared", notice, receivers)
    return record


async def clear_rule(
    conn: asyncpg.Connection, rule_id: str, by: str, notice: Notice, receivers: Sequence[str]
) -> int:
    """Clear every active alert of a rule (deleted, or its condition changed); returns how many."""
    rows = await conn.fetch(
        "WITH a AS (UPDATE alerts SET state = CASE WHEN state = $2 THEN $3::smallint ELSE $4::smallint END, "
        f"clear_time = now(), cleared_by = $5 WHERE rule_id = $1 AND state IN (1, 2) RETURNING *) {_CHANGED}",
        rule_id,
        ACTIVE_UNACK,
        CLEARED_UNACK,
        CLEARED_ACK,
        by,
    )
    for row in rows:
        await enqueue(conn, AlertRecord.from_row(row), "cleared", notice, receivers)
    return len(rows)


# -- people's changes -----------------------------------------------------------------------------


async def acknowledge(
    conn: asyncpg.Connection, alert_id: int, actor: str, notice: Notice, receivers: Sequence[str]
) -> AlertRecord:
    """Acknowledge an alert (an acknowledged one is returned as it is); NotFound."""
    row = await conn.fetchrow(
        "WITH a AS (UPDATE alerts SET state = CASE WHEN state = $2 THEN $3::smallint ELSE $4::smallint END, "
        "acknowledge_time = now(), acknowledged_by = $5 WHERE alert_id = $1 AND state IN ($2, $6) "
        f"RETURNING *) {_CHANGED}",
        alert_id,
        ACTIVE_UNACK,
        ACTIVE_ACK,
        CLEARED_ACK,
        actor,
        CLEARED_UNACK,
    )
    if row is None:
        return await get(conn, alert_id)
    record = AlertRecord.from_row(row)
    await enqueue(conn, record, "acknowledged", notice, receivers)
    return record


async def clear_by_hand(
    conn: asyncpg.Connection, alert_id: int, actor: str, notice: Notice, receivers: Sequence[str]
) -> AlertRecord:
    """Clear an active alert by hand (a cleared one is returned as it is); NotFound."""
    row = await conn.fetchrow(
        "WITH a AS (UPDATE alerts SET state = CASE WHEN state = $2 THEN $3::smallint ELSE $4::smallint END, "
        f"clear_time = now(), cleared_by = $5 WHERE alert_id = $1 AND state IN (1, 2) RETURNING *) {_CHANGED}",
        alert_id,
        ACTIVE_UNACK,
        CLEARED_UNACK,
        CLEARED_ACK,
        actor,
    )
    if row is None:
        return await get(conn, alert_id)
    record = AlertRecord.from_row(row)
    # The evaluator must not think the condition still holds an alert open: forget its series state.
    await conn.execute(
        "DELETE FROM alert_series_states WHERE rule_id = $1 AND device_id = $2 AND sensor = $3",
        record.rule_id,
        record.device_id,
        record.sensor,
    )
    await enqueue(conn, record, "cleared", notice, receivers)
    return record


# -- reading ------------------------------------------------------------------------------------


async def get(conn: asyncpg.Connection, alert_id: int, scope: DeviceScope | None = None) -> AlertRecord:
    """The alert; NotFound unless it exists and its device is in `scope` (None: every device)."""
    ids, labels = scope_parameters(scope)
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM alerts a JOIN devices d ON d.device_id = a.device_id "
        f"WHERE a.alert_id = $1 AND {IN_SCOPE.format(ids='$2', labels='$3')}",
        alert_id,
        ids,
        labels,
    )
    if row is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return AlertRecord.from_row(row)


async def list_alerts(
    conn: asyncpg.Connection,
    *,
    states: Sequence[int],
    severities: Sequence[int],
    device_id: str,
    rule_id: str,
    before_id: int | None,
    limit: int,
    scope: DeviceScope | None,
) -> list[AlertRecord]:
    """Up to `limit` alerts with ids below `before_id`, newest first, filtered (empty: any)."""
    ids, labels = scope_parameters(scope)
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM alerts a JOIN devices d ON d.device_id = a.device_id "
        "WHERE (cardinality($1::smallint[]) = 0 OR a.state = ANY($1::smallint[])) "
        "AND (cardinality($2::smallint[]) = 0 OR a.severity = ANY($2::smallint[])) "
        "AND ($3 = '' OR a.device_id = $3) AND ($4 = '' OR a.rule_id = $4) "
        "AND ($5::bigint IS NULL OR a.alert_id < $5) "
        f"AND {IN_SCOPE.format(ids='$7', labels='$8')} ORDER BY a.alert_id DESC LIMIT $6",
        list(states),
        list(severities),
        device_id,
        rule_id,
        before_id,
        limit,
        ids,
        labels,
    )
    return [AlertRecord.from_row(row) for row in rows]


async def get_many(
    conn: asyncpg.Connection, alert_ids: Sequence[int]
) -> list[tuple[AlertRecord, dict[str, str]]]:
    """The alerts with these ids, each with its device's labels (for scopes)."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS}, d.labels FROM alerts a JOIN devices d ON d.device_id = a.device_id "
        "WHERE a.alert_id = ANY($1::bigint[]) ORDER BY a.alert_id",
        list(alert_ids),
    )
    return [(AlertRecord.from_row(row), _labels(row["labels"])) for row in rows]


async def active(conn: asyncpg.Connection) -> list[AlertRecord]:
    """Every active alert (Alertmanager is told again of each, so it keeps them firing)."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM alerts a WHERE a.state IN (1, 2)")
    return [AlertRecord.from_row(row) for row in rows]


def _labels(value: Any) -> dict[str, str]:
    return dict(json.loads(value) if isinstance(value, str) else value)


# -- the outbox and history ---------------------------------------------------------------------


async def enqueue(
    conn: asyncpg.Connection, record: AlertRecord, event: str, notice: Notice, receivers: Sequence[str]
) -> None:
    """One outbox row per receiver for this change (in the caller's transaction)."""
    if not receivers:
        return
    payload = json.dumps({"event": event, "alert": alert_json(record), **asdict(notice)})
    await conn.execute(
        "INSERT INTO alert_notifications (alert_id, receiver, payload) "
        "SELECT $1, receiver, $3::jsonb FROM unnest($2::text[]) AS receiver",
        record.alert_id,
        list(receivers),
        payload,
    )


def alert_json(record: AlertRecord) -> dict[str, Any]:
    """The alert as plain JSON (times as RFC 3339), for the outbox."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in asdict(record).items()
    }


async def prune(conn: asyncpg.Connection, retention: timedelta) -> tuple[int, int]:
    """Delete alerts cleared longer ago than `retention`, and delivered or dead
    notifications as old; returns how many of each."""
    alerts = await conn.execute(
        "DELETE FROM alerts WHERE state IN ($1, $2) AND clear_time < now() - $3::interval",
        CLEARED_UNACK,
        CLEARED_ACK,
        retention,
    )
    notifications = await conn.execute(
        "DELETE FROM alert_notifications WHERE coalesce(delivered_time, dead_time) < now() - $1::interval",
        retention,
    )
    return int(alerts.split()[-1]), int(notifications.split()[-1])
