"""Batches as the contract wants them: covering (after, last], readings strictly increasing inside."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway_agent.batches import build_batch
from gateway_agent.buffer import Stored, Thinned
from gateway_agent.readings import imu
from sensormesh_core.validation import validate

PAYLOAD = imu("imu-1", 1_767_225_600 * 10**9, (0.0, 0.0, 9.8), (0.0, 0.0, 0.0)).SerializeToString()


@given(
    after=st.integers(min_value=0, max_value=10**12),
    gaps=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=200),
)
def test_a_batch_covers_everything_after_the_mark_including_thinned_gaps(after: int, gaps: list[int]) -> None:
    sequences, current = [], after
    for gap in gaps:  # gaps > 1 are numbers thinned away on the device
        current += gap
        sequences.append(current)
    batch = build_batch("pi-1", after, [Stored(s, PAYLOAD) for s in sequences])
    validate(batch)
    assert batch.first_sequence == after + 1
    assert batch.last_sequence == sequences[-1]
    assert [r.sequence for r in batch.readings] == sequences
    assert batch.readings[0].reading.imu.acceleration_z_mps2 > 9


def test_a_batch_without_readings_carries_reports_at_the_mark_without_moving_it() -> None:
    thinned = Thinned((1, 2), "imu-1", 500, 10**18, 2 * 10**18)
    batch = build_batch("pi-1", 42, [], thinned=[thinned])
    validate(batch)
    assert (batch.first_sequence, batch.last_sequence) == (42, 42)
    assert batch.thinned[0].count == 500
    assert batch.thinned[0].first_sample_time.ToNanoseconds() == 10**18
