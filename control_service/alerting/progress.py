"""An evaluation round's bookkeeping, in one statement at each end of its transaction.

At the start: the leader's epoch (locked FOR SHARE, so no new leader's epoch commits while
this transaction runs), and for each device of the round its cursor and what the rules'
conditions remember of its series. At the end: the changed condition states and the advanced
cursors. Round trips to PostgreSQL were the evaluator's largest cost after reading the rows
back (each one a wake-up of two processes), so a round costs the same few whatever the
number of devices in it.

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

from control_service.alerting.leader import ensure_current

State = dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """Where a device's evaluation stands: its cursor (sequence 0 if it has none yet) and its
    series' states by (rule_id, sensor)."""

    sequence: int
    sample_time: datetime | None
    states: dict[tuple[str, str], State]


async def begin(
    conn: asyncpg.Connection, epoch: int, device_ids: Sequence[str], rule_ids: Sequence[str]
) -> dict[str, Progress]:
    """Inside the evaluation's transaction: each device's progress, or LeadershipLost."""
    rows = await conn.fetch(
        "SELECT l.epoch, d.device_id, c.sequence, c.sample_time, "
        "(SELECT json_agg(json_build_array(s.rule_id, s.sensor, s.state)) FROM alert_series_states s "
        " WHERE s.device_id = d.device_id AND s.rule_id = ANY($2::text[])) AS states "
        "FROM alert_leader l CROSS JOIN unnest($1::text[]) AS d(device_id) "
        "LEFT JOIN alert_cursors c ON c.device_id = d.device_id WHERE l.id = 1 FOR SHARE OF l",
        list(device_ids),
        list(rule_ids),
    )
    ensure_current(rows[0]["epoch"] if rows else None, epoch)
    return {
        row["device_id"]: Progress(
            int(row["sequence"] or 0),
            row["sample_time"],
            {(rule_id, sensor): dict(state) for rule_id, sensor, state in json.loads(row["states"] or "[]")},
        )
        for row in rows
    }


@dataclass(frozen=True)
class Advance:
    """Where a device's cursor moves: to `sequence`, its sample time to `sample_time` if the
    window had readings (else it keeps its own)."""

    device_id: str
    sequence: int
    sample_time: datetime | None


async def finish(
    conn: asyncpg.Connection,
    advances: Sequence[Advance],
    changed: Mapping[tuple[str, str, str], State],
) -> None:
    """Inside the evaluation's transaction: store the changed states, by (device_id, rule_id,
    sensor), and move the cursors."""
    keys = list(changed)
    await conn.execute(
        "WITH saved AS (INSERT INTO alert_series_states (device_id, rule_id, sensor, state) "
        " SELECT u.device_id, u.rule_id, u.sensor, u.state::jsonb "
        " FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(device_id, rule_id, sensor, state) "
        " ON CONFLICT (rule_id, device_id, sensor) DO UPDATE SET state = EXCLUDED.state) "
        "INSERT INTO alert_cursors (device_id, sequence, sample_time) "
        "SELECT u.device_id, u.sequence, coalesce(u.sample_time, c.sample_time, now()) "
        "FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u(device_id, sequence, sample_time) "
        "LEFT JOIN alert_cursors c ON c.device_id = u.device_id "
        "ON CONFLICT (device_id) DO UPDATE SET sequence = EXCLUDED.sequence, sample_time = EXCLUDED.sample_time",
        [a.device_id for a in advances],
        [a.sequence for a in advances],
        [a.sample_time for a in advances],
        [device_id for device_id, _, _ in keys],
        [rule_id for _, rule_id, _ in keys],
        [sensor for _, _, sensor in keys],
        [json.dumps(changed[key]) for key in keys],
    )
