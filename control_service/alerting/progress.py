"""A device's evaluation bookkeeping, in one statement at each end of its transaction.

At the start: the leader's epoch (locked FOR SHARE, so no new leader's epoch commits while
this transaction runs), the device's cursor and what the rules' conditions remember of its
series. At the end: the changed condition states and the advanced cursor. An evaluation
costs a dozen round trips to PostgreSQL whatever its window holds; at full ingest rate those
were the evaluator's largest cost after reading the rows back, so the four statements these
two replace matter.

The cursor row is not locked: one leader judges a device in one task at a time, and a
deposed leader's transaction cannot commit past the epoch it holds locked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from control_service.alerting.leader import LeadershipLost

State = dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """Where a device's evaluation stands: its cursor (sequence 0 if it has none yet) and its
    series' states by (rule_id, sensor)."""

    sequence: int
    sample_time: datetime | None
    states: dict[tuple[str, str], State]


async def begin(conn: asyncpg.Connection, epoch: int, device_id: str, rule_ids: Sequence[str]) -> Progress:
    """Inside the evaluation's transaction: the device's progress, or LeadershipLost."""
    row = await conn.fetchrow(
        "SELECT l.epoch, c.sequence, c.sample_time, "
        "(SELECT json_agg(json_build_array(s.rule_id, s.sensor, s.state)) FROM alert_series_states s "
        " WHERE s.device_id = $1 AND s.rule_id = ANY($2::text[])) AS states "
        "FROM alert_leader l LEFT JOIN alert_cursors c ON c.device_id = $1 WHERE l.id = 1 FOR SHARE OF l",
        device_id,
        list(rule_ids),
    )
    current = row["epoch"] if row is not None else None
    if current != epoch:
        raise LeadershipLost(f"epoch {epoch} is over; the leader is at {current}")
    states = {(rule_id, sensor): dict(state) for rule_id, sensor, state in json.loads(row["states"] or "[]")}
    return Progress(int(row["sequence"] or 0), row["sample_time"], states)


async def finish(
    conn: asyncpg.Connection,
    device_id: str,
    sequence: int,
    sample_time: datetime | None,
    changed: Mapping[tuple[str, str], State],
) -> None:
    """Inside the evaluation's transaction: store the changed states and move the cursor to
    `sequence` (its sample time to `sample_time`, if the window had readings)."""
    keys = list(changed)
    await conn.execute(
        "WITH saved AS (INSERT INTO alert_series_states (rule_id, device_id, sensor, state) "
        " SELECT u.rule_id, $1, u.sensor, u.state::jsonb FROM unnest($4::text[], $5::text[], $6::text[]) "
        " AS u(rule_id, sensor, state) "
        " ON CONFLICT (rule_id, device_id, sensor) DO UPDATE SET state = EXCLUDED.state) "
        "INSERT INTO alert_cursors (device_id, sequence, sample_time) VALUES ($1, $2, coalesce($3, now())) "
        "ON CONFLICT (device_id) DO UPDATE SET sequence = EXCLUDED.sequence, "
        "sample_time = coalesce($3, alert_cursors.sample_time)",
        device_id,
        sequence,
        sample_time,
        [rule_id for rule_id, _ in keys],
        [sensor for _, sensor in keys],
        [json.dumps(changed[key]) for key in keys],
    )
