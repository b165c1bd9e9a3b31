"""Conditions the agent reports with its uploads, judged with each batch of the device.

- input failing: the device's inputs as it last reported them (`device_inputs`, which ingest
  writes with each batch that carries a status); an alert per failing input, counted once per
  batch while it fails, cleared when the input reads again.
- thinning: the thinning reports that came with the window's batches; an alert per sensor,
  counting the readings discarded, cleared by the next batch of that device without a report
  for the sensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from control_service.alerting.changes import Tally, active_sensors, moment
from control_service.alerting.rules import CompiledRule, Kind
from sensormesh_core.storage import alert_inputs, alerts
from sensormesh_core.storage.alert_inputs import Window
from sensormesh_core.storage.alerts import BY_RULE, Raise, SeriesKey


async def judge(
    conn: asyncpg.Connection,
    window: Window,
    rules: Sequence[CompiledRule],
    receivers: Sequence[str],
    tally: Tally,
) -> None:
    """Judge the agent-reported conditions of `rules` for the window's batches."""
    failing = [r for r in rules if r.kind is Kind.INPUT_FAILING]
    thinning = [r for r in rules if r.kind is Kind.THINNING]
    if failing:
        inputs = await alert_inputs.input_states(conn, window.device_id)
        for rule in failing:
            await _inputs(conn, rule, window.device_id, inputs, receivers, tally)
    if thinning:
        reports = await alert_inputs.thinning(conn, window)
        for rule in thinning:
            await _thinning(conn, rule, window.device_id, reports, receivers, tally)


async def _inputs(
    conn: asyncpg.Connection,
    rule: CompiledRule,
    device_id: str,
    inputs: dict[str, bool],
    receivers: Sequence[str],
    tally: Tally,
) -> None:
    now = datetime.now(UTC)
    for name, is_failing in inputs.items():
        if not rule.watches(name):
            continue
        key = SeriesKey(rule.rule_id, device_id, name)
        if is_failing:
            new = Raise(key, "", rule.severity, now, now, 0.0, 1, f"input {name} is failing")
            _, raised = await alerts.raise_alert(conn, new, rule.notice, receivers)
            tally.raised += raised
        else:
            tally.cleared += await alerts.clear_active(conn, key, BY_RULE, rule.notice, receivers) is not None


async def _thinning(
    conn: asyncpg.Connection,
    rule: CompiledRule,
    device_id: str,
    reports: dict[str, tuple[int, float]],
    receivers: Sequence[str],
    tally: Tally,
) -> None:
    for sensor, (count, last) in reports.items():
        if not rule.watches(sensor):
            continue
        key = SeriesKey(rule.rule_id, device_id, sensor)
        message = f"the agent discarded {count} readings of {sensor} to stay within its disk budget"
        new = Raise(key, "", rule.severity, moment(last), moment(last), float(count), count, message)
        _, raised = await alerts.raise_alert(conn, new, rule.notice, receivers)
        tally.raised += raised
    for sensor in await active_sensors(conn, rule.rule_id, device_id) - set(reports):
        key = SeriesKey(rule.rule_id, device_id, sensor)
        tally.cleared += await alerts.clear_active(conn, key, BY_RULE, rule.notice, receivers) is not None
