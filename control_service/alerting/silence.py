"""No-data rules: a silence is an absence of readings, so no reading can tell of it; the leader
looks every `interval` seconds.

Per device (or per sensor, when the rule names sensors), the newest sample time is the one
ingest keeps in the latest values. Raised when it is more than the rule's silence ago (the
alert's first time is that last reading); cleared when a newer reading is within the
silence. A device that has never sent a reading is not silent yet: it has nothing to miss.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from control_service.alerting.changes import Tally, active_sensors
from control_service.alerting.leader import check_epoch
from control_service.alerting.rules import CompiledRule, Kind
from sensormesh_core.storage import alert_inputs, alerts
from sensormesh_core.storage.alerts import BY_RULE, Raise, SeriesKey

log = logging.getLogger(__name__)

DEVICE_WIDE = ""


async def watch_silences(
    pool: asyncpg.Pool,
    rules: Callable[[], Sequence[CompiledRule]],
    epoch: int,
    receivers: Sequence[str],
    interval: float,
) -> None:
    """Judge the no-data rules every `interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        silences = [r for r in rules() if r.kind is Kind.NO_DATA]
        if not silences:
            continue
        try:
            async with pool.acquire() as conn, conn.transaction():
                await check_epoch(conn, epoch)
                await judge_silences(conn, silences, receivers, datetime.now(UTC))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("event=alert_silence_check_failed error=%r", exc)


async def judge_silences(
    conn: asyncpg.Connection, rules: Sequence[CompiledRule], receivers: Sequence[str], now: datetime
) -> Tally:
    """One look at every no-data rule's devices."""
    tally = Tally()
    devices = {
        row["device_id"]: _labels(row["labels"])
        for row in await conn.fetch("SELECT device_id, labels FROM devices")
    }
    last = await alert_inputs.last_readings(conn, list(devices))
    for rule in rules:
        for device_id, labels in devices.items():
            if rule.selects(device_id, labels):
                await _judge(conn, rule, device_id, last, now, receivers, tally)
    return tally


async def _judge(
    conn: asyncpg.Connection,
    rule: CompiledRule,
    device_id: str,
    last: dict[tuple[str, str], datetime],
    now: datetime,
    receivers: Sequence[str],
    tally: Tally,
) -> None:
    newest: dict[str, datetime] = {}
    for (device, sensor), at in last.items():
        if device != device_id:
            continue
        if rule.sensors:
            if sensor in rule.sensors:
                newest[sensor] = at
        else:
            newest[DEVICE_WIDE] = max(newest.get(DEVICE_WIDE, at), at)
    active = await active_sensors(conn, rule.rule_id, device_id)
    silence = timedelta(seconds=rule.silence)
    for sensor, at in newest.items():
        key = SeriesKey(rule.rule_id, device_id, sensor)
        quiet = now - at > silence
        if quiet and sensor not in active:
            what = f"{sensor}: " if sensor else ""
            message = (
                f"{what}no reading for {_ago(now - at)} (limit {_ago(silence)}), the last at {at.isoformat()}"
            )
            new = Raise(key, "", rule.severity, at, at, 0.0, 1, message)
            _, raised = await alerts.raise_alert(conn, new, rule.notice, receivers)
            tally.raised += raised
        elif not quiet and sensor in active:
            tally.cleared += await alerts.clear_active(conn, key, BY_RULE, rule.notice, receivers) is not None


def _ago(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _labels(value: object) -> dict[str, str]:
    return dict(json.loads(value) if isinstance(value, str) else value)  # type: ignore[arg-type]
