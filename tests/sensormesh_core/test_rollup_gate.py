"""Which rows of a batch are late, per table and key (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sensormesh_core.storage.rollup_gate import RECENT, REFRESH_LAG, LateRange, late_ranges

rows = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 5)), max_size=40).map(
    lambda pairs: [(moment, sequence, key, 1.0) for sequence, (moment, key) in enumerate(pairs)]
)


@given(
    tables=st.dictionaries(st.sampled_from(["imu_readings", "measurements"]), rows),
    horizon=st.integers(0, 101),
)
def test_late_ranges_span_exactly_the_late_rows_of_each_key(
    tables: dict[str, list[tuple[int, int, int, float]]], horizon: int
) -> None:
    expected = set()
    for table, table_rows in tables.items():
        for key in {r[2] for r in table_rows}:
            late = [r[0] for r in table_rows if r[2] == key and r[0] < horizon]
            if late:
                expected.add(LateRange(table, key, min(late), max(late)))
    found = late_ranges(tables, horizon)
    assert len(found) == len(expected)
    assert set(found) == expected


def test_the_refresher_stays_further_back_than_writers_look() -> None:
    assert REFRESH_LAG > RECENT
