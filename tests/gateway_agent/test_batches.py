"""Batches as the contract wants them: covering (after, last], readings strictly increasing inside."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from sensormesh.v1.reading_pb2 import EnvironmentPayload, Reading

from gateway_agent.batches import build_batch
from gateway_agent.buffer import Stored, Thinned
from gateway_agent.readings import imu
from sensormesh_core.columnar import to_columns
from sensormesh_core.validation import validate

PAYLOAD = imu("imu-1", 1_767_225_600 * 10**9, (0.0, 0.0, 9.8), (0.0, 0.0, 0.0)).SerializeToString()
ENVIRONMENT = Reading(
    sensor="bme280-0x76", environment=EnvironmentPayload(temperature_celsius=21.5)
).SerializeToString()


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


@given(
    after=st.integers(min_value=0, max_value=10**12),
    gaps=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=200),
)
def test_a_columnar_batch_carries_the_same_readings_in_columns(after: int, gaps: list[int]) -> None:
    sequences = list(itertools.accumulate(gaps, initial=after))[1:]
    rows = [Stored(s, PAYLOAD if s % 3 else ENVIRONMENT) for s in sequences]
    as_rows = build_batch("pi-1", after, rows)
    batch = build_batch("pi-1", after, rows, columnar=True)
    assert not batch.readings
    assert (batch.first_sequence, batch.last_sequence) == (as_rows.first_sequence, as_rows.last_sequence)
    assert list(batch.columns) == to_columns(as_rows.readings)
    numbers = sorted(n for entry in batch.columns for n in itertools.accumulate(entry.sequence_deltas))
    assert numbers == sequences


def test_readings_only_rows_can_carry_keep_the_batch_in_rows() -> None:
    unknown = Reading(sensor="radar-0")
    unknown.MergeFromString(b"\x7a\x03\x0d\x00\x00")  # a payload kind of newer contracts
    batch = build_batch(
        "pi-1", 0, [Stored(1, PAYLOAD), Stored(2, unknown.SerializeToString())], columnar=True
    )
    assert [r.sequence for r in batch.readings] == [1, 2] and not batch.columns
