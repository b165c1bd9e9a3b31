"""Property tests of the exactly-once rule (ingest_service/offsets.py): any
order of batches, replays and overlaps stores each reading at most once, and
an agent that resumes from the mark leaves no gap."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ingest_service.batch import LatestValue, PreparedBatch, Rejection
from ingest_service.offsets import next_mark, range_violations, renumber, trim

N = 200


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, frozenset[int]]:
    """A batch: a range [first, last] of 1..N and the numbers in it that were not thinned."""
    first = draw(st.integers(1, N))
    last = draw(st.integers(first, min(N, first + 40)))
    thinned = draw(st.frozensets(st.integers(first, last), max_size=5))
    return first, last, frozenset(range(first, last + 1)) - thinned


def prepared(
    first: int, last: int, sequences: frozenset[int], rejected: frozenset[int] = frozenset()
) -> PreparedBatch:
    """A batch whose readings are rows (or rejections) carrying their sequence."""
    ordered = sorted(sequences)
    return PreparedBatch(
        device_id="pi",
        first_sequence=first,
        last_sequence=last,
        reading_count=len(ordered),
        rows={"imu_readings": [(s * 10, s, 1, float(s)) for s in ordered if s not in rejected]},
        latest=[LatestValue(1, ordered[-1] * 10, 0.0, ordered[-1])] if ordered else [],
        rejected=[Rejection(i, s, "reading", "bad", b"") for i, s in enumerate(ordered) if s in rejected],
    )


class Store:
    """What the database holds: rows per sequence and the mark, moved only by `trim`."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.dead: list[int] = []
        self.mark = 0

    def commit(self, batch: PreparedBatch) -> tuple[int, int]:
        trimmed = trim(batch, self.mark)
        written = [row[1] for rows in trimmed.rows.values() for row in rows]
        self.rows += written
        self.dead += [r.sequence for r in trimmed.rejected]
        assert all(s > self.mark for s in written + [r.sequence for r in trimmed.rejected])
        assert all(v.sequence > self.mark for v in trimmed.latest)
        self.mark = trimmed.mark
        return trimmed.accepted, trimmed.duplicates


@given(st.lists(windows(), min_size=1, max_size=30))
def test_any_order_of_batches_stores_each_reading_at_most_once(
    sent: list[tuple[int, int, frozenset[int]]],
) -> None:
    store = Store()
    for first, last, sequences in sent:
        accepted, duplicates = store.commit(prepared(first, last, sequences))
        assert accepted + duplicates == len(sequences)

    assert len(store.rows) == len(set(store.rows))
    assert store.mark == max(last for _, last, _ in sent)
    assert set(store.rows) <= set().union(*(s for _, _, s in sent))


@given(st.lists(windows(), min_size=1, max_size=30), st.integers(1, 60), st.frozensets(st.integers(1, N)))
def test_an_agent_resuming_from_the_mark_leaves_no_gap(
    noise: list[tuple[int, int, frozenset[int]]], size: int, bad: frozenset[int]
) -> None:
    """Whatever was sent before (replays, overlaps, bad readings), resuming after the
    mark in batches of any size ends with every reading stored or dead-lettered once."""
    store = Store()
    for first, last, sequences in noise:
        store.commit(prepared(first, last, sequences, bad))
    # The agent's own readings are the union of what it ever sent; it resumes after the mark.
    everything = frozenset(range(1, N + 1))
    for first in range(store.mark + 1, N + 1, size):
        last = min(N, first + size - 1)
        store.commit(prepared(first, last, frozenset(range(first, last + 1)), bad))

    kept = sorted(store.rows + store.dead)
    assert len(kept) == len(set(kept))
    resent = everything - frozenset(range(1, max((w[1] for w in noise), default=0) + 1))
    assert resent <= set(kept)
    assert store.mark == N


@given(st.integers(0, 10), st.integers(0, 10), st.lists(st.integers(0, 12), max_size=12))
def test_range_violations_accept_exactly_strictly_increasing_sequences_within_range(
    first: int, span: int, sequences: list[int]
) -> None:
    last = first + span
    found = range_violations(first, last, sequences, limit=100)
    valid = all(first <= s <= last for s in sequences) and all(
        a < b for a, b in itertools.pairwise(sequences)
    )
    assert (found == []) == valid


@given(windows(), st.integers(0, 1000))
def test_renumbering_moves_every_sequence_and_keeps_order(
    window: tuple[int, int, frozenset[int]], offset: int
) -> None:
    first, last, sequences = window
    batch = prepared(first, last, sequences, frozenset(list(sequences)[:1]))

    moved = renumber(batch, offset)

    assert (moved.first_sequence, moved.last_sequence) == (first + offset, last + offset)
    assert [r[1] for r in moved.rows["imu_readings"]] == [r[1] + offset for r in batch.rows["imu_readings"]]
    assert [r.sequence for r in moved.rejected] == [r.sequence + offset for r in batch.rejected]
    assert [v.sequence for v in moved.latest] == [v.sequence + offset for v in batch.latest]


@given(st.integers(0, 2**62), st.integers(1, 2**62))
def test_the_mark_never_moves_back(mark: int, last: int) -> None:
    assert next_mark(mark, last) == max(mark, last) >= mark
