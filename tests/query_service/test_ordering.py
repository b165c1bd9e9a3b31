"""Putting a device's commit signals back in sequence order (query_service/live/ordering.py),
driven by hypothesis with tilings of the sequence numbers arriving in any order."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from query_service.live.ordering import DeviceOrder, Hold, Ready
from sensormesh_core.storage.live_signal import CommitSignal

T0 = datetime(2026, 11, 23, tzinfo=UTC)
WAIT = 2.0


@st.composite
def tilings(draw: st.DrawFn) -> tuple[int, list[CommitSignal]]:
    """A device's mark when watching starts, and the signals of its next commits (tiling what follows)."""
    start = draw(st.integers(0, 1000))
    cuts = draw(st.lists(st.integers(1, 50), min_size=1, max_size=12))
    signals, mark = [], start
    for length in cuts:
        has_rows = draw(st.booleans()) or length > 40
        at = T0 if has_rows else None
        signals.append(CommitSignal("pi-1", mark + 1, mark + length, at, at))
        mark += length
    return start, signals


def drain(order: DeviceOrder, now: float) -> list[Ready]:
    found = []
    while isinstance(step := order.next(now, WAIT), Ready):
        found.append(step)
    return found


@given(tilings(), st.randoms(use_true_random=False))
def test_signals_in_any_order_are_delivered_in_sequence_order_exactly_once(
    tiling: tuple[int, list[CommitSignal]], rng: object
) -> None:
    start, signals = tiling
    arrivals = list(signals)
    rng.shuffle(arrivals)  # type: ignore[attr-defined]
    order = DeviceOrder()
    order.start_from(start)
    delivered: list[Ready] = []
    for now, signal in enumerate(arrivals):  # one arrival a second: always inside the wait
        order.add(signal)
        delivered += drain(order, now * 0.1)
    assert [r.missed for r in delivered] == [0] * len(delivered)
    numbers = [n for r in delivered for n in range(r.signal.first_sequence, r.signal.last_sequence + 1)]
    assert numbers == list(range(start + 1, signals[-1].last_sequence + 1))
    assert not order.pending and order.delivered == signals[-1].last_sequence


@given(tilings(), st.sets(st.integers(0, 11)), st.randoms(use_true_random=False))
def test_a_lost_signal_is_waited_for_then_reported_as_missed(
    tiling: tuple[int, list[CommitSignal]], lost_indexes: set[int], rng: object
) -> None:
    start, signals = tiling
    lost = [s for i, s in enumerate(signals) if i in lost_indexes]
    arrivals = [s for i, s in enumerate(signals) if i not in lost_indexes]
    rng.shuffle(arrivals)  # type: ignore[attr-defined]
    order = DeviceOrder()
    order.start_from(start)
    delivered: list[Ready] = []
    for signal in arrivals:
        order.add(signal)
        delivered += drain(order, 0.0)
    step = order.next(0.5, WAIT)
    assert step is None or isinstance(step, Hold)
    later = 0.0
    while order.pending:  # the wait passes: give up the holes one by one
        later += WAIT
        delivered += drain(order, later)
    # Delivered ranges ascend without overlap; every number is delivered or counted as missed.
    covered = [n for r in delivered for n in range(r.signal.first_sequence, r.signal.last_sequence + 1)]
    assert covered == sorted(set(covered))
    last_arrived = max((s.last_sequence for s in arrivals), default=start)
    missed = sum(r.missed for r in delivered)
    assert len(covered) + missed == last_arrived - start
    # Lost signals after the last one that came are not known to be lost (nothing follows them).
    assert missed == sum(len_(s) for s in lost if s.last_sequence < last_arrived)


def len_(signal: CommitSignal) -> int:
    return signal.last_sequence - signal.first_sequence + 1


def test_a_signal_before_the_first_mark_is_known_waits_for_it() -> None:
    order = DeviceOrder()
    order.add(CommitSignal("pi-1", 5, 9, T0, T0))
    assert isinstance(order.next(0.0, WAIT), Hold)
    order.start_from(6)  # the feed read the mark: 5..6 committed before it started
    step = order.next(0.1, WAIT)
    assert isinstance(step, Ready) and (step.signal.first_sequence, step.signal.last_sequence) == (7, 9)


def test_late_and_stale_signals_are_dropped() -> None:
    order = DeviceOrder()
    order.start_from(10)
    order.add(CommitSignal("pi-1", 3, 10, T0, T0))  # committed before the feed started
    assert order.next(0.0, WAIT) is None and not order.pending
    order.add(CommitSignal("pi-1", 11, 20, T0, T0))
    assert isinstance(order.next(0.0, WAIT), Ready)
    assert order.skip_to(25) == 5 and order.delivered == 25  # LISTEN reconnected: 21..25 unknown
    assert order.skip_to(12) == 0 and order.delivered == 25
