"""What the evaluator's findings do to alerts: raise, count, clear, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from control_service.alerting.conditions import Cleared, Event, Met, Raised
from control_service.alerting.rules import CompiledRule
from sensormesh_core.storage import alerts
from sensormesh_core.storage.alerts import BY_RULE, Raise, SeriesKey


def moment(seconds: float) -> datetime:
    """Epoch seconds as an aware datetime."""
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Tally:
    """How many alerts an evaluation raised and cleared (for metrics and logs)."""

    raised: int = 0
    cleared: int = 0


async def apply(
    conn: asyncpg.Connection,
    rule: CompiledRule,
    key: SeriesKey,
    events: Sequence[Event],
    receivers: Sequence[str],
    tally: Tally,
) -> None:
    """Apply a series' events, in order."""
    for event in events:
        if isinstance(event, Raised):
            new = Raise(
                key,
                rule.quantity,
                rule.severity,
                moment(event.first_time),
                moment(event.time),
                event.value,
                event.count,
                event.message,
            )
            _, raised = await alerts.raise_alert(conn, new, rule.notice, receivers)
            tally.raised += raised
        elif isinstance(event, Met):
            await alerts.add_met(conn, key, event.count, moment(event.time), event.value)
        elif isinstance(event, Cleared):
            tally.cleared += await alerts.clear_active(conn, key, BY_RULE, rule.notice, receivers) is not None


async def active_sensors(conn: asyncpg.Connection, rule_id: str, device_id: str) -> set[str]:
    """The sensors with an active alert of `rule_id` on `device_id`."""
    rows = await conn.fetch(
        "SELECT sensor FROM alerts WHERE rule_id = $1 AND device_id = $2 AND state IN (1, 2)",
        rule_id,
        device_id,
    )
    return {row["sensor"] for row in rows}
