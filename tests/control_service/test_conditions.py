"""The alert conditions, each against a plain reading-by-reading model of what it must do, on
generated series cut into batches at generated places (the state must carry across), and on
series whose answer is known (a crossing at a known time, an anomaly at a known index)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_service.alerting.conditions import (
    Anomaly,
    Cleared,
    Event,
    Met,
    Raised,
    RateOfChange,
    Threshold,
)


def run(condition: Any, times: list[float], values: list[float], cuts: list[int]) -> list[Event]:
    """Evaluate in batches cut at `cuts`, carrying the state, and join what happened (Met folded)."""
    events: list[Event] = []
    state: dict[str, Any] = {}
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(times)), len(times)]
    for start, stop in itertools.pairwise(bounds):
        out, state = condition.evaluate(np.array(times[start:stop]), np.array(values[start:stop]), state)
        for event in out.events:
            if isinstance(event, Met) and events and isinstance(events[-1], Met):
                previous = events[-1]
                events[-1] = Met(previous.count + event.count, event.time, event.value)
            else:
                events.append(event)
    return events


def threshold_model(
    high: float, hysteresis: float, hold: float, clear_hold: float, times: list[float], values: list[float]
) -> list[tuple[str, float, int]]:
    """Above `high` for `hold`, cleared at or below `high - hysteresis` for `clear_hold`, one reading at a time."""
    found: list[tuple[str, float, int]] = []
    phase, since, count, met_count = "idle", 0.0, 0, 0
    for t, v in zip(times, values, strict=True):
        met, cleared = v > high, v <= high - hysteresis
        if phase == "idle" and met:
            phase, since, count = "pending", t, 0
        if phase == "pending":
            if not met:
                phase = "idle"
            else:
                count += 1
                if t - since >= hold:
                    found.append(("raised", t, count))
                    phase, met_count = "active", 0
            continue
        if phase == "active":
            if cleared:
                phase, since = "clearing", t
            elif met:
                met_count += 1
                continue
            else:
                continue
        if phase == "clearing":
            if not cleared:
                phase = "active"
                if met:
                    met_count += 1
            elif t - since >= clear_hold:
                if met_count:
                    found.append(("met", t, met_count))
                found.append(("cleared", t, 0))
                phase, met_count = "idle", 0
    if phase in ("active", "clearing") and met_count:
        found.append(("met", times[-1], met_count))
    return found


def shape(events: list[Event]) -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    for e in events:
        if isinstance(e, Raised):
            out.append(("raised", e.time, e.count))
        elif isinstance(e, Met):
            out.append(("met", 0.0, e.count))
        elif isinstance(e, Cleared):
            out.append(("cleared", e.time, 0))
    return out


series = st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    values=series,
    hold=st.sampled_from([0.0, 1.0, 2.5]),
    clear_hold=st.sampled_from([0.0, 1.0]),
    hysteresis=st.sampled_from([0.0, 2.0]),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_threshold_matches_the_reading_by_reading_model_however_the_batches_fall(
    values: list[float], hold: float, clear_hold: float, hysteresis: float, cuts: list[int]
) -> None:
    times = [i * 0.5 for i in range(len(values))]
    condition = Threshold(
        low=None, high=10.0, hysteresis=hysteresis, hold=hold, clear_hold=clear_hold, describe="above 10"
    )
    got = shape(run(condition, times, values, cuts))
    want = threshold_model(10.0, hysteresis, hold, clear_hold, times, values)
    # Met counts fold differently around clears; compare raises and clears exactly, met in total.
    assert [e for e in got if e[0] != "met"] == [e for e in want if e[0] != "met"]
    assert sum(e[2] for e in got if e[0] == "met") == sum(e[2] for e in want if e[0] == "met")


def test_a_crossing_held_for_its_duration_raises_once_at_the_known_time_and_clears_with_hysteresis() -> None:
    times = [float(t) for t in range(20)]
    values = [20.0] * 5 + [31.0] * 8 + [29.5] * 2 + [27.0] * 5  # above 30 from t=5 to t=12
    condition = Threshold(low=None, high=30.0, hysteresis=2.0, hold=3.0, clear_hold=1.0, describe="above 30")
    events = run(condition, times, values, cuts=[7, 14])
    raised = [e for e in events if isinstance(e, Raised)]
    assert [(r.first_time, r.time, r.count) for r in raised] == [(5.0, 8.0, 4)]
    assert raised[0].message == "31 above 30 for 3s"
    assert [e.time for e in events if isinstance(e, Cleared)] == [16.0]  # <= 28 at t=15, held 1 s
    assert sum(e.count for e in events if isinstance(e, Met)) == 4  # t = 9..12


def test_outside_a_range_counts_both_sides() -> None:
    condition = Threshold(
        low=5.0, high=10.0, hysteresis=0.0, hold=0.0, clear_hold=0.0, describe="outside 5..10"
    )
    events = run(condition, [0, 1, 2, 3, 4], [7, 4, 11, 8, 12], cuts=[])
    assert [type(e).__name__ for e in events] == ["Raised", "Met", "Cleared", "Raised"]


def test_a_rate_of_change_compares_with_the_value_a_window_earlier_across_batches() -> None:
    times = [float(t) for t in range(12)]
    values = [10, 10, 10, 10, 10, 16, 16, 16, 16, 16, 16, 16]  # +6 within 2 s at t=5
    condition = RateOfChange(window=2.0, max_change=5.0, direction=1)
    events = run(condition, times, [float(v) for v in values], cuts=[3, 6])
    assert [(type(e).__name__, e.time) for e in events] == [("Raised", 5.0), ("Met", 6.0), ("Cleared", 7.0)]
    falling = run(
        RateOfChange(window=2.0, max_change=5.0, direction=2), times, [float(v) for v in values], cuts=[]
    )
    assert falling == []


def test_an_injected_anomaly_is_raised_at_its_index_and_only_after_arming() -> None:
    rng = np.random.default_rng(7)
    values = list(20.0 + rng.normal(0, 0.1, 400))
    values[300] = 25.0  # 50 standard deviations off
    values[5] = 40.0  # before the rule is armed: ignored
    times = [float(t) for t in range(400)]
    events = run(Anomaly(span=50, deviations=6.0, min_samples=50), times, values, cuts=[100, 299, 301])
    raised = [e for e in events if isinstance(e, Raised)]
    assert [r.time for r in raised] == [300.0]
    assert "moving standard deviations" in raised[0].message
    assert [e.time for e in events if isinstance(e, Cleared)] == [301.0]


@pytest.mark.parametrize("span", [2, 19, 100, 1000, 100_000])
def test_the_block_form_of_the_moving_averages_equals_the_recursion(span: int) -> None:
    rng = np.random.default_rng(3)
    rule = Anomaly(span=span, deviations=6.0, min_samples=2)
    alpha = rule.alpha
    x = rng.normal(5, 2, 3 * rule.block + 17)  # whole blocks and a part
    mean, var = float(x[0]), 0.0
    means, variances = [], []
    for value in x:
        means.append(mean)
        variances.append(var)
        delta = value - mean
        mean += alpha * delta
        var = (1 - alpha) * (var + alpha * delta * delta)
    m0, v0 = float(x[0]), 0.0
    got_m, got_v = [], []
    for start in range(0, len(x), rule.block):
        m_before, v_before, m0, v0 = rule.averages.step(x[start : start + rule.block], m0, v0)
        got_m += list(m_before)
        got_v += list(v_before)
    assert np.allclose(got_m, means, rtol=1e-9, atol=1e-9)
    assert np.allclose(got_v, variances, rtol=1e-9, atol=1e-9)
    assert m0 == pytest.approx(mean) and v0 == pytest.approx(var)
