"""The alert evaluator: every committed reading judged against the rules, in reading time.

It runs on the leader (leader.py). It LISTENs for ingest's commit signal (the one live feeds
use): a signal says "device D committed sequences a..b, sampled t1..t2", and the evaluator
reads exactly those rows back, for the quantities its rules of D watch, and judges them in
sequence order. Per device it keeps a cursor (the last sequence judged and its sample time)
and per rule and series what the condition remembers, both written in the same transaction
as the alerts they lead to, after checking the leader's epoch: a restart or a failover
resumes at the cursor, and nothing is judged twice or skipped.

Signals are hints: a signal lost (the LISTEN connection dropped, the leader changed) is made
good by a resync, which compares every cursor with the device's committed mark and judges the
difference. Signals of one device that overtake each other (two ingest replicas) are merged
and judged from the cursor on, so order never matters. The time range of a resync starts an
hour before the cursor's sample time (`resync_margin`): readings a device's clock dated
earlier than that, committed while no evaluator heard them, are not judged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from control_service.alerting import agent_rules, progress
from control_service.alerting.changes import Tally, apply
from control_service.alerting.rules import CompiledRule, Kind, compile_rule
from sensormesh_core.storage import alert_inputs, alert_rules, live_signal
from sensormesh_core.storage.alert_inputs import SensorNames, SeriesValues, Window
from sensormesh_core.storage.alerts import SeriesKey
from sensormesh_core.storage.listener import Connect, Listener
from sensormesh_core.storage.live_signal import CommitSignal

log = logging.getLogger(__name__)

FUTURE = timedelta(days=1)  # the upper end of a resync's time range, past any device clock's skew
LABELS_TTL = 10.0  # a device's new labels select it for rules within this (seconds)
CONCURRENT_ROUNDS = 4  # rounds judged at once (each holds a pooled connection meanwhile)
ROUND_DEVICES = 64  # devices in one round at most (one UNION ALL branch each in its COPY)
RETRY_AFTER = 1.0  # after a round failed (the database away), the next rounds wait this long (seconds)


@dataclass
class _Pending:
    """Signals of one device not judged yet, merged."""

    last_sequence: int
    first_time: datetime | None
    last_time: datetime | None

    def merge(self, signal: CommitSignal) -> None:
        self.absorb(_Pending(signal.last_sequence, signal.first_time, signal.last_time))

    def absorb(self, other: _Pending) -> None:
        self.last_sequence = max(self.last_sequence, other.last_sequence)
        if other.first_time is not None and other.last_time is not None:
            self.first_time = min(self.first_time or other.first_time, other.first_time)
            self.last_time = max(self.last_time or other.last_time, other.last_time)


class Evaluator:
    """Judges committed readings for as long as `lead(epoch)` runs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Connect,
        receivers: Sequence[str],
        *,
        resync_margin: timedelta = timedelta(hours=1),
        round_interval: float = 0.5,
    ) -> None:
        self._pool = pool
        self._connect = connect
        self._receivers = list(receivers)
        self._margin = resync_margin
        self._round_interval = round_interval  # seconds between rounds' starts, at least
        self._rules: list[CompiledRule] = []
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._reload = True
        self._epoch = 0
        self._judging: dict[str, asyncio.Task[None]] = {}  # device -> the round judging it
        self._rounds: set[asyncio.Task[None]] = set()
        self._ticked_at = -round_interval  # when the last rounds started (the loop's clock)
        self._failed_at = -RETRY_AFTER  # when a round last failed
        self._timer: asyncio.TimerHandle | None = None
        self._failure: BaseException | None = None
        self._labels: dict[str, tuple[float, dict[str, str] | None]] = {}
        self._names = SensorNames()
        # device -> (the rules list and the labels dict it was chosen from, the rules selecting it)
        self._selected: dict[str, tuple[list[CompiledRule], dict[str, str], list[CompiledRule]]] = {}
        self.judged = 0  # readings judged (all rules), for tests and the benchmark

    @property
    def rules(self) -> list[CompiledRule]:
        return self._rules

    @property
    def receivers(self) -> list[str]:
        return self._receivers

    async def lead(self, epoch: int) -> None:
        """Evaluate as leader `epoch` until cancelled (or the epoch is taken: LeadershipLost)."""
        self._epoch = epoch
        readings = Listener(self._connect, live_signal.CHANNEL, self._on_commit, on_reconnect=self._resync)
        rules = Listener(self._connect, alert_rules.CHANNEL, self._on_rules, on_reconnect=self._rules_changed)
        await readings.start()
        await rules.start()
        try:
            await self._load_rules()
            await self._resync()
            await self._work()
        finally:
            await readings.stop()
            await rules.stop()

    # -- signals ------------------------------------------------------------------------------

    def _on_commit(self, payload: str) -> None:
        try:
            signal = live_signal.decode(payload)
        except ValueError:
            log.warning("event=alert_signal_malformed payload=%r", payload[:200])
            return
        if not isinstance(signal, CommitSignal) or not self._rules:
            return
        pending = self._pending.get(signal.device_id)
        if pending is None:
            self._pending[signal.device_id] = _Pending(
                signal.last_sequence, signal.first_time, signal.last_time
            )
        else:
            pending.merge(signal)
        self._wake.set()

    def _on_rules(self, _payload: str) -> None:
        self._reload = True
        self._wake.set()

    async def _rules_changed(self) -> None:
        self._on_rules("")

    async def _load_rules(self) -> None:
        self._reload = False
        async with self._pool.acquire() as conn:
            stored = await alert_rules.all_rules(conn)
        self._rules = [compile_rule(s.rule) for s in stored if not s.rule.disabled]
        log.info("event=alert_rules_loaded rules=%d", len(self._rules))

    async def _resync(self) -> None:
        """Judge what every device committed since its cursor (signals may have been lost)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO alert_cursors (device_id, sequence, sample_time) "
                "SELECT device_id, committed_sequence, now() FROM upload_offsets ON CONFLICT DO NOTHING"
            )
            rows = await conn.fetch(
                "SELECT o.device_id, o.committed_sequence, c.sample_time FROM upload_offsets o "
                "JOIN alert_cursors c USING (device_id) WHERE c.sequence < o.committed_sequence"
            )
        far = datetime.now(UTC) + FUTURE
        for row in rows:
            pending = self._pending.setdefault(row["device_id"], _Pending(0, None, None))
            pending.last_sequence = max(pending.last_sequence, row["committed_sequence"])
            since = (row["sample_time"] or datetime.now(UTC)) - self._margin
            pending.first_time = min(pending.first_time or since, since)
            pending.last_time = max(pending.last_time or far, far)
        log.info("event=alert_resync devices_behind=%d", len(rows))
        self._wake.set()

    # -- judging ------------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    raise failure
                if self._reload:
                    await self._load_rules()
                self._start_rounds()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            rounds = list(self._rounds)
            for task in rounds:
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    def _start_rounds(self) -> None:
        """Start rounds of the pending devices, oldest signal first: at most one tick per
        round interval (SENSORMESH_ALERT_ROUND_INTERVAL), then as many rounds of up to
        ROUND_DEVICES as there are pending devices and free slots (CONCURRENT_ROUNDS).

        A round judges its devices in one transaction, with a few statements whatever their
        number (progress.py, alert_inputs.values), and each rule runs once per series and
        round: per-round costs were most of what judging cost at full ingest rate, so the
        fleet's signals are gathered for the interval and judged together; after a quiet spell
        a signal starts a round at once. A device is in one round at a time: signals that come
        meanwhile wait in `_pending`, in their place in the queue, for the next tick."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = max(self._ticked_at + self._round_interval, self._failed_at + RETRY_AFTER)
        if due > now:
            if self._pending and (self._timer is None or due < self._timer.when()):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(due, self._due)
            return
        started = False
        while len(self._rounds) < CONCURRENT_ROUNDS:
            batch: dict[str, _Pending] = {}
            for device_id in list(self._pending):
                if len(batch) >= ROUND_DEVICES:
                    break
                if device_id not in self._judging:
                    batch[device_id] = self._pending.pop(device_id)
            if not batch:
                break
            task = asyncio.create_task(self._round_safely(batch))
            self._rounds.add(task)
            self._judging.update(dict.fromkeys(batch, task))
            task.add_done_callback(functools.partial(self._round_done, list(batch)))
            started = True
        if started:
            self._ticked_at = now

    def _due(self) -> None:
        self._timer = None
        self._wake.set()

    def _round_done(self, device_ids: list[str], task: asyncio.Task[None]) -> None:
        self._rounds.discard(task)
        for device_id in device_ids:
            self._judging.pop(device_id, None)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()  # LeadershipLost, or a bug: `_work` raises it
        self._wake.set()  # a free slot: start the next round

    async def _round_safely(self, batch: dict[str, _Pending]) -> None:
        try:
            await self._round(batch)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Not judged: back in the queue, merged with what came meanwhile, so the time range
            # its signals named is still read when it is judged again.
            log.warning("event=alert_evaluation_failed devices=%d error=%r", len(batch), exc)
            self._failed_at = asyncio.get_running_loop().time()
            for device_id, pending in batch.items():
                if device_id in self._pending:
                    self._pending[device_id].absorb(pending)
                else:
                    self._pending[device_id] = pending

    async def _round(self, batch: dict[str, _Pending]) -> None:
        """Judge the batch's devices in one transaction."""
        chosen: dict[str, list[CompiledRule]] = {}
        for device_id in batch:
            rules = await self._rules_of(device_id)  # None: deleted, its alerts and cursor with it
            if rules:  # none: no transaction (a rule that selects it later starts from then)
                chosen[device_id] = rules
        if not chosen:
            return
        series_ids = sorted({r.rule_id for rules in chosen.values() for r in rules if r.kind is Kind.SERIES})
        tally = Tally()
        async with self._pool.acquire() as conn, conn.transaction():
            starts = await progress.begin(conn, self._epoch, list(chosen), series_ids)
            # A batch without readings (statuses, thinning reports) has no time range: its agent
            # conditions are still judged; the readings' queries then find nothing.
            now = datetime.now(UTC)
            windows = [
                Window(d, starts[d].sequence, p.last_sequence, p.first_time or now, p.last_time or now)
                for d, p in batch.items()
                if d in chosen and p.last_sequence > starts[d].sequence
            ]
            if not windows:
                return
            found = await self._values(conn, windows, chosen)
            advances: list[progress.Advance] = []
            changed: dict[tuple[str, str, str], progress.State] = {}
            for window in windows:
                rules = chosen[window.device_id]
                states = starts[window.device_id].states
                series_rules = [r for r in rules if r.kind is Kind.SERIES]
                newest = await self._judge_series(
                    conn, window, series_rules, states, found.get(window.device_id, {}), changed, tally
                )
                agent_conditions = [r for r in rules if r.kind is not Kind.SERIES]
                await agent_rules.judge(conn, window, agent_conditions, self._receivers, tally)
                advances.append(progress.Advance(window.device_id, window.last_sequence, newest))
            await progress.finish(conn, advances, changed)
        if tally.raised or tally.cleared:
            log.info(
                "event=alerts_changed devices=%d raised=%d cleared=%d",
                len(windows),
                tally.raised,
                tally.cleared,
            )

    async def _values(
        self, conn: asyncpg.Connection, windows: list[Window], chosen: Mapping[str, list[CompiledRule]]
    ) -> dict[str, dict[str, list[SeriesValues]]]:
        """The windows' values of every quantity a series rule of theirs watches."""
        series_rules = [r for w in windows for r in chosen[w.device_id] if r.kind is Kind.SERIES]
        quantities = sorted({r.quantity for r in series_rules})
        if not quantities:
            return {}
        everything = any(not r.sensors for r in series_rules)
        sensors = [] if everything else sorted(set().union(*(r.sensors for r in series_rules)))
        return await alert_inputs.values(conn, windows, quantities, sensors, self._names)

    async def _rules_of(self, device_id: str) -> list[CompiledRule] | None:
        """The rules (but no-data ones) that select the device, or None if it was deleted; chosen
        again only when the rules or the device's labels were loaded again, not every round."""
        labels = await self._labels_of(device_id)
        if labels is None:
            return None
        known = self._selected.get(device_id)
        if known is not None and known[0] is self._rules and known[1] is labels:
            return known[2]
        rules = [r for r in self._rules if r.kind is not Kind.NO_DATA and r.selects(device_id, labels)]
        self._selected[device_id] = (self._rules, labels, rules)
        return rules

    async def _labels_of(self, device_id: str) -> dict[str, str] | None:
        """The device's labels (None if it was deleted), looked up at most every LABELS_TTL seconds."""
        known = self._labels.get(device_id)
        if known is not None and time.monotonic() - known[0] < LABELS_TTL:
            return known[1]
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT labels FROM devices WHERE device_id = $1", device_id)
        labels = None if value is None else _json(value)
        self._labels[device_id] = (time.monotonic(), labels)
        return labels

    async def _judge_series(
        self,
        conn: asyncpg.Connection,
        window: Window,
        series_rules: list[CompiledRule],
        states: Mapping[tuple[str, str], progress.State],
        found: Mapping[str, list[SeriesValues]],
        changed: dict[tuple[str, str, str], progress.State],
        tally: Tally,
    ) -> datetime | None:
        """Judge the window's readings (`found`, by quantity) by its device's series rules,
        noting in `changed` the states that changed; returns the newest sample time seen."""
        newest = 0.0
        by_quantity: dict[str, list[CompiledRule]] = {}
        for rule in series_rules:
            by_quantity.setdefault(rule.quantity, []).append(rule)
        for quantity, all_series in found.items():
            on_quantity = by_quantity.get(quantity, [])
            for series in all_series:
                newest = max(newest, float(series.times[-1]))
                self.judged += len(series.values) * len(on_quantity)
                for rule in on_quantity:
                    if not rule.watches(series.sensor):
                        continue
                    assert rule.condition is not None
                    before = states.get((rule.rule_id, series.sensor), {})
                    outcome, state = rule.condition.evaluate(series.times, series.values, before)
                    if state != before:  # an idle threshold's state rarely changes: no write
                        changed[(window.device_id, rule.rule_id, series.sensor)] = state
                    key = SeriesKey(rule.rule_id, window.device_id, series.sensor)
                    await apply(conn, rule, key, outcome.events, self._receivers, tally)
        return datetime.fromtimestamp(newest, UTC) if newest else None


def _json(value: Any) -> dict[str, Any]:
    """A jsonb value as asyncpg returns it (text, unless a codec is set)."""
    return dict(json.loads(value) if isinstance(value, str) else value)
