"""A stream's consecutive batches joined into one (ingest_service/batch.py `joined`) store
exactly what committing them one after the other stores, at any mark: rows, refused
readings, the mark, and the latest values and input states the writer's upserts keep."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from ingest_service.batch import InputRow, LatestValue, PreparedBatch, Rejection, ThinningRow, follows, joined
from ingest_service.offsets import trim

N = 120
SERIES = (1, 2, 3)
INPUTS = ("bme280", "mpu6050")


@st.composite
def consecutive(draw: st.DrawFn) -> list[PreparedBatch]:
    """Batches covering 1..N in order, each right after the one before, with thinned-out
    numbers, refused readings, latest candidates whose times may go back, and input states."""
    cuts = sorted(draw(st.sets(st.integers(1, N - 1), max_size=5)))
    bounds = list(zip([1, *(c + 1 for c in cuts)], [*cuts, N], strict=True))
    return [draw(_batch(first, last)) for first, last in bounds]


@st.composite
def _batch(draw: st.DrawFn, first: int, last: int) -> PreparedBatch:
    numbers = sorted(set(range(first, last + 1)) - draw(st.frozensets(st.integers(first, last), max_size=4)))
    refused = draw(st.frozensets(st.sampled_from(numbers), max_size=3)) if numbers else frozenset()
    kept = [s for s in numbers if s not in refused]
    latest = [
        LatestValue(series, draw(st.integers(0, 50)), 0.0, draw(st.sampled_from(kept)))
        for series in (draw(st.sets(st.sampled_from(SERIES))) if kept else ())
    ]
    inputs = [
        InputRow(name, draw(st.integers(0, 3)), "", 0, draw(st.integers(0, 50)))
        for name in draw(st.sets(st.sampled_from(INPUTS)))
    ]
    thinned = [ThinningRow("mpu6050", 3, 0, 10)] if draw(st.booleans()) else []
    return PreparedBatch(
        device_id="pi",
        first_sequence=first,
        last_sequence=last,
        reading_count=len(numbers),
        rows={"imu_readings": [(s * 10, s, 1, float(s)) for s in kept]} if kept else {},
        latest=latest,
        rejected=[Rejection(i, s, "reading", "bad", b"") for i, s in enumerate(numbers) if s in refused],
        thinned=thinned,
        inputs=inputs,
        min_time=kept[0] * 10 if kept else None,
        max_time=kept[-1] * 10 if kept else None,
    )


@dataclass
class Store:
    """What the database holds after the writer's statements, modelled."""

    mark: int
    rows: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    latest: dict[int, tuple[int, int]] = field(default_factory=dict)
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)
    reports: set[ThinningRow] = field(default_factory=set)

    def commit(self, batch: PreparedBatch) -> None:
        trimmed = trim(batch, self.mark)
        self.rows += [row[1] for rows in trimmed.rows.values() for row in rows]
        self.dead += [r.sequence for r in trimmed.rejected]
        series = [v.series_id for v in trimmed.latest]
        assert len(series) == len(set(series)), "one statement touches a latest row once"
        for value in trimmed.latest:  # newest (time, sequence) wins
            if value.series_id not in self.latest or self.latest[value.series_id] <= (
                value.time,
                value.sequence,
            ):
                self.latest[value.series_id] = (value.time, value.sequence)
        names = [i.input for i in batch.inputs]
        assert len(names) == len(set(names)), "one statement touches an input's row once"
        for state in batch.inputs:  # an older observation never replaces a newer one
            if state.input not in self.inputs or self.inputs[state.input][1] <= state.observe_time:
                self.inputs[state.input] = (state.state, state.observe_time)
        self.reports.update(batch.thinned)
        self.mark = trimmed.mark


@given(consecutive(), st.integers(0, N))
def test_joined_batches_store_what_the_batches_store_one_after_the_other(
    batches: list[PreparedBatch], mark: int
) -> None:
    apart, together = Store(mark), Store(mark)
    for batch in batches:
        apart.commit(batch)
    together.commit(joined(batches))

    assert together == apart
    assert joined(batches).joined == len(batches)


def test_batches_follow_only_right_after_one_another() -> None:
    def batch(first: int, last: int, device: str = "pi") -> PreparedBatch:
        return PreparedBatch(device, first, last, last - first + 1)

    assert follows(batch(101, 200), batch(1, 100))
    assert not follows(batch(102, 200), batch(1, 100))  # a gap: committed apart, so it is logged
    assert not follows(batch(50, 200), batch(1, 100))  # an overlap (a resend)
    assert not follows(batch(101, 200, "other"), batch(1, 100))
