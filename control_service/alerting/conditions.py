"""The conditions of alert rules as state machines over a series' readings, in reading time.

Each condition takes one series' new readings of a batch, in order (sample times in seconds
and values, as numpy arrays), and the state it left after the previous batch, and returns
what happened (`Event`s: raised, met again, cleared) and its new state. The state is a small
JSON-able dict, stored with the evaluator's cursor, so a restart resumes exactly.

The work is done on whole arrays: a threshold finds the runs where it is met and only steps
through the transitions (a handful per batch), so a 100 Hz series costs what numpy costs, not
a Python loop per reading. The moving averages of anomalies are computed block by block with
the closed form of the exponential recursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Raised:
    """The condition began to hold at `first_time` and held long enough at `time`."""

    first_time: float
    time: float
    value: float
    count: int  # readings that met it, from first_time through time
    message: str


@dataclass(frozen=True, slots=True)
class Met:
    """While active, `count` more readings met the condition, the last at `time`."""

    count: int
    time: float
    value: float


@dataclass(frozen=True, slots=True)
class Cleared:
    """The clear condition held (long enough) at `time`."""

    time: float


Event = Raised | Met | Cleared


@dataclass
class Outcome:
    """What a batch did to one series."""

    events: list[Event] = field(default_factory=list)

    def met(self, count: int, time: float, value: float) -> None:
        """Add met readings, folding them into the previous Met."""
        if count <= 0:
            return
        if self.events and isinstance(self.events[-1], Met):
            previous = self.events[-1]
            self.events[-1] = Met(previous.count + count, time, value)
        else:
            self.events.append(Met(count, time, value))


class Condition(Protocol):
    """One rule's condition, applied to one series at a time."""

    def evaluate(self, times: Floats, values: Floats, state: State) -> tuple[Outcome, State]: ...


def _next(indexes: NDArray[np.intp], start: int) -> int:
    """The first of the sorted `indexes` at or after `start`, or -1."""
    position = int(np.searchsorted(indexes, start))
    return int(indexes[position]) if position < len(indexes) else -1


def _count(indexes: NDArray[np.intp], start: int, stop: int) -> int:
    """How many of the sorted `indexes` lie in [start, stop)."""
    return int(np.searchsorted(indexes, stop) - np.searchsorted(indexes, start))


@dataclass(frozen=True)
class Threshold:
    """Above, below or outside limits for `hold` seconds; cleared `hysteresis` back for `clear_hold`.

    State: {"phase": "idle" | "pending" | "active" | "clearing", "since": t, "first": t,
    "count": n} (since: when the pending or clearing phase began; first and count: of the
    pending run, so a raise reports where it began).
    """

    low: float | None  # met below this
    high: float | None  # met above this
    hysteresis: float
    hold: float
    clear_hold: float
    describe: str  # "above 30", for messages

    def _met(self, values: Floats) -> NDArray[np.bool_]:
        met = np.zeros(len(values), dtype=bool)
        if self.high is not None:
            met |= values > self.high
        if self.low is not None:
            met |= values < self.low
        return met

    def _any_met(self, values: Floats) -> bool:
        if not len(values):
            return False
        return bool(
            (self.high is not None and values.max() > self.high)
            or (self.low is not None and values.min() < self.low)
        )

    def _cleared(self, values: Floats) -> NDArray[np.bool_]:
        cleared = np.ones(len(values), dtype=bool)
        if self.high is not None:
            cleared &= values <= self.high - self.hysteresis
        if self.low is not None:
            cleared &= values >= self.low + self.hysteresis
        return cleared

    def evaluate(self, times: Floats, values: Floats, state: State) -> tuple[Outcome, State]:
        if state.get("phase", "idle") == "idle" and not self._any_met(values):
            return Outcome(), state  # the usual batch: idle, and nothing crosses
        met, cleared = self._met(values), self._cleared(values)
        met_at, unmet_at = np.flatnonzero(met), np.flatnonzero(~met)
        cleared_at, uncleared_at = np.flatnonzero(cleared), np.flatnonzero(~cleared)
        out = Outcome()
        phase = state.get("phase", "idle")
        since, first, count = state.get("since", 0.0), state.get("first", 0.0), state.get("count", 0)
        i, n = 0, len(values)
        while i < n:
            if phase == "idle":
                i = _next(met_at, i)
                if i < 0:
                    break
                phase, since, first, count = "pending", float(times[i]), float(times[i]), 0
            elif phase == "pending":
                run_end = _next(unmet_at, i)
                run_end = n if run_end < 0 else run_end
                due = int(np.searchsorted(times, since + self.hold, side="left"))
                fire = max(i, due)
                if fire < run_end:  # held long enough within this run
                    count += fire - i + 1
                    value = float(values[fire])
                    out.events.append(Raised(first, float(times[fire]), value, count, self._message(value)))
                    phase, i = "active", fire + 1
                else:
                    count += run_end - i
                    i = run_end
                    if run_end < n:
                        phase = "idle"
            elif phase == "active":
                stop = _next(cleared_at, i)
                stop = n if stop < 0 else stop
                self._add_met(out, met_at, i, stop, times, values)
                if stop == n:
                    break
                phase, since, i = "clearing", float(times[stop]), stop
            else:  # clearing
                broken = _next(uncleared_at, i)
                broken = n if broken < 0 else broken
                due = int(np.searchsorted(times, since + self.clear_hold, side="left"))
                done = max(i, due)
                if done < broken:
                    out.events.append(Cleared(float(times[done])))
                    phase, i = "idle", done + 1
                elif broken < n:
                    phase, i = "active", broken  # back in the band or met again: still active
                else:
                    break
        return out, {"phase": phase, "since": since, "first": first, "count": count}

    @staticmethod
    def _add_met(
        out: Outcome, met_at: NDArray[np.intp], start: int, stop: int, times: Floats, values: Floats
    ) -> None:
        count = _count(met_at, start, stop)
        if count:
            last = int(met_at[np.searchsorted(met_at, stop) - 1])
            out.met(count, float(times[last]), float(values[last]))

    def _message(self, value: float) -> str:
        held = f" for {_duration(self.hold)}" if self.hold else ""
        return f"{value:.6g} {self.describe}{held}"


@dataclass(frozen=True)
class RateOfChange:
    """|value - value `window` seconds earlier| above `max_change` (rises or falls only, if asked).

    State: {"t": [...], "v": [...]}: the readings of the last `window` seconds, so the next batch
    compares against them (bounded by MAX_TAIL readings; a denser series keeps an even subset),
    and "active".
    """

    window: float
    max_change: float
    direction: int  # 0 either, 1 rise, 2 fall
    MAX_TAIL = 4096

    def evaluate(self, times: Floats, values: Floats, state: State) -> tuple[Outcome, State]:
        all_t = np.concatenate([np.asarray(state.get("t", []), dtype=np.float64), times])
        all_v = np.concatenate([np.asarray(state.get("v", []), dtype=np.float64), values])
        offset = len(all_t) - len(times)
        reference = np.searchsorted(all_t, all_t[offset:] - self.window, side="right") - 1
        armed = reference >= 0
        change = all_v[offset:] - all_v[np.maximum(reference, 0)]
        if self.direction == 1:
            met = armed & (change > self.max_change)
        elif self.direction == 2:
            met = armed & (-change > self.max_change)
        else:
            met = armed & (np.abs(change) > self.max_change)
        out, active = _episodes(
            met, times, values, bool(state.get("active", False)), self._message, lambda i: float(change[i])
        )
        keep = all_t >= (all_t[-1] - self.window) if len(all_t) else np.zeros(0, dtype=bool)
        tail_t, tail_v = all_t[keep], all_v[keep]
        if len(tail_t) > self.MAX_TAIL:
            pick = np.linspace(0, len(tail_t) - 1, self.MAX_TAIL).astype(np.intp)
            tail_t, tail_v = tail_t[pick], tail_v[pick]
        return out, {"t": tail_t.tolist(), "v": tail_v.tolist(), "active": active}

    def _message(self, value: float, change: float) -> str:
        return f"changed by {change:+.6g} within {_duration(self.window)} (limit {self.max_change:g}), now {value:.6g}"


@dataclass(frozen=True)
class Anomaly:
    """|value - moving mean| above `deviations` moving standard deviations, armed after
    `min_samples`. State: {"n": count, "mean": m, "var": v, "active": bool}."""

    span: int
    deviations: float
    min_samples: int
    MAX_BLOCK = 4096  # the weights kept per rule: 64 KB

    @property
    def alpha(self) -> float:
        return 2.0 / (self.span + 1)

    @property
    def block(self) -> int:
        """Readings per closed-form block: as many as keep its weights (1 - alpha)^-k under
        1e100, well within a double, and its rounding far below the readings' own (209 for
        span 2), at most MAX_BLOCK. A block costs a dozen numpy calls whatever its length,
        so a batch of a thousand readings is one block, not four."""
        return max(1, min(self.MAX_BLOCK, int(230.0 / -math.log1p(-self.alpha))))

    @cached_property
    def averages(self) -> MovingAverages:
        return MovingAverages(self.alpha, self.block)

    def evaluate(self, times: Floats, values: Floats, state: State) -> tuple[Outcome, State]:
        n0 = int(state.get("n", 0))
        mean = float(state.get("mean", values[0] if len(values) else 0.0))
        var = float(state.get("var", 0.0))
        means, variances = np.empty(len(values)), np.empty(len(values))
        size = self.block
        for start in range(0, len(values), size):
            block = values[start : start + size]
            if n0 + start == 0:
                mean = float(block[0])
            m_prev, v_prev, mean, var = self.averages.step(block, mean, var)
            means[start : start + len(block)], variances[start : start + len(block)] = m_prev, v_prev
        distance = np.abs(values - means)
        spread = np.sqrt(variances)
        met = distance > self.deviations * spread
        met &= spread > 0
        met[: max(0, self.min_samples - n0)] = False  # not armed before min_samples readings

        def score(i: int) -> float:
            return float(distance[i] / spread[i])

        out, active = _episodes(met, times, values, bool(state.get("active", False)), self._message, score)
        return out, {"n": n0 + len(values), "mean": mean, "var": var, "active": active}

    def _message(self, value: float, score: float) -> str:
        return (
            f"{value:.6g} is {score:.1f} moving standard deviations from its mean (limit {self.deviations:g})"
        )


class MovingAverages:
    """Exponentially weighted mean and variance by their closed forms over a block of readings:
    m_t = m_{t-1} + a (x_t - m_{t-1}), v_t = (1 - a) (v_{t-1} + a (x_t - m_{t-1})^2) become
    cumulative sums weighted by (1 - a)^-k, scaled back by (1 - a)^k. The weights depend only
    on the rule, so they are computed once, not per batch (that was half an evaluation)."""

    def __init__(self, alpha: float, block: int) -> None:
        decay = 1.0 - alpha
        k = np.arange(1, block + 1, dtype=np.float64)
        grow = decay**-k
        self._mean_in = alpha * grow  # the weight of x_k in the mean's sum
        self._var_in = alpha * decay * grow
        self._shrink = decay**k

    def step(self, x: Floats, mean: float, var: float) -> tuple[Floats, Floats, float, float]:
        """The mean and variance before each of `x` (what a reading is judged against), and
        after the last; `x` no longer than the block."""
        n = len(x)
        shrink = self._shrink[:n]
        m_after = np.cumsum(x * self._mean_in[:n])
        m_after += mean
        m_after *= shrink
        m_before = np.empty(n)
        m_before[0], m_before[1:] = mean, m_after[:-1]
        innovation = x - m_before
        innovation *= innovation
        innovation *= self._var_in[:n]
        v_after = np.cumsum(innovation)
        v_after += var
        v_after *= shrink
        v_before = np.empty(n)
        v_before[0], v_before[1:] = var, v_after[:-1]
        return m_before, v_before, float(m_after[-1]), float(v_after[-1])


def _episodes(
    met: NDArray[np.bool_],
    times: Floats,
    values: Floats,
    active: bool,
    message: Any,
    detail: Callable[[int], float],
) -> tuple[Outcome, bool]:
    """Raise at the first met reading, count the met ones, clear at the first one not met: the
    shape of conditions without a hold time. `detail(i)`: what the message says of reading i."""
    out = Outcome()
    if not active and not met.any():
        return out, False  # the usual batch: nothing met, nothing to do
    met_at, unmet_at = np.flatnonzero(met), np.flatnonzero(~met)
    i, n = 0, len(met)
    while i < n:
        if not active:
            i = _next(met_at, i)
            if i < 0:
                break
            t, v = float(times[i]), float(values[i])
            out.events.append(Raised(t, t, v, 1, message(v, detail(i))))
            active, i = True, i + 1
        else:
            stop = _next(unmet_at, i)
            stop = n if stop < 0 else stop
            count = stop - i
            if count:
                out.met(count, float(times[stop - 1]), float(values[stop - 1]))
            if stop == n:
                break
            out.events.append(Cleared(float(times[stop])))
            active, i = False, stop + 1
    return out, active


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if seconds == math.floor(seconds) else f"{seconds:.3g}s"
