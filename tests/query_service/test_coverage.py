"""How a bucketed read is split between rollup levels and the raw table (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from query_service.storage.coverage import ALWAYS, NEVER, Level, Piece, plan
from sensormesh_core.storage.time_buckets import HOUR, MINUTE, ceil_to, floor_to

T0 = datetime(2026, 5, 4, tzinfo=UTC)
seconds = st.integers(min_value=0, max_value=6 * 3600)


def at(second: int) -> datetime:
    return T0 + timedelta(seconds=second)


def test_whole_hours_then_minutes_then_raw_edges_and_tail() -> None:
    levels = [Level("1h", HOUR, at(3 * 3600 + 600)), Level("1m", MINUTE, at(3 * 3600 + 1230))]
    pieces = plan(at(1830), at(4 * 3600), levels)
    assert pieces == [
        Piece(None, at(1830), at(1860)),
        Piece("1m", at(1860), at(3600)),
        Piece("1h", at(3600), at(3 * 3600)),
        Piece("1m", at(3 * 3600), at(3 * 3600 + 1200)),
        Piece(None, at(3 * 3600 + 1200), at(4 * 3600)),
    ]


def test_stale_buckets_go_to_the_level_below() -> None:
    levels = [Level("1h", HOUR, ALWAYS), Level("1m", MINUTE, ALWAYS)]
    pieces = plan(at(0), at(2 * 3600), levels, stale=[(at(4000), at(4001))])
    assert pieces == [
        Piece("1h", at(0), at(3600)),
        Piece("1m", at(3600), at(3960)),
        Piece(None, at(3960), at(4020)),
        Piece("1m", at(4020), at(7200)),
    ]


def test_a_span_stale_for_one_level_only_is_read_from_the_level_below() -> None:
    """TimescaleDB: the 1-hour aggregate refreshed less often than the 1-minute one misses
    what the 1-minute one already holds; those hours come from 1-minute buckets, not raw."""
    levels = [Level("1h", HOUR, ALWAYS, stale=((at(3600), at(7200)),)), Level("1m", MINUTE, ALWAYS)]
    pieces = plan(at(0), at(3 * 3600), levels)
    assert pieces == [
        Piece("1h", at(0), at(3600)),
        Piece("1m", at(3600), at(7200)),
        Piece("1h", at(7200), at(3 * 3600)),
    ]


def test_nothing_materialized_reads_raw() -> None:
    assert plan(at(0), at(600), [Level("1m", MINUTE, NEVER)]) == [Piece(None, at(0), at(600))]


@given(
    start=seconds,
    length=seconds,
    hour_mark=seconds,
    minute_extra=st.integers(min_value=0, max_value=7200),
    stale=st.lists(st.tuples(seconds, st.integers(min_value=1, max_value=5000)), max_size=5),
)
def test_pieces_cover_the_range_once_and_rollups_only_where_complete(
    start: int, length: int, hour_mark: int, minute_extra: int, stale: list[tuple[int, int]]
) -> None:
    levels = [Level("1h", HOUR, at(hour_mark)), Level("1m", MINUTE, at(hour_mark + minute_extra))]
    spans = [(at(a), at(a + n)) for a, n in stale]
    pieces = plan(at(start), at(start + length), levels, spans)

    cursor = at(start)
    for piece in pieces:
        assert piece.start == cursor and piece.start < piece.end
        cursor = piece.end
    assert cursor == at(start + length)
    for before, after in itertools.pairwise(pieces):
        assert before.source != after.source  # adjacent pieces of one source are joined
    for piece in pieces:
        level = next((lv for lv in levels if lv.width == piece.source), None)
        if level is None:
            continue
        assert floor_to(piece.start, level.step) == piece.start
        assert ceil_to(piece.end, level.step) == piece.end
        assert piece.end <= level.watermark
        for a, b in spans:
            assert not (piece.start < b and a < piece.end)  # no rollup bucket misses late rows
