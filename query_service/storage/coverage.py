"""Which source serves which part of a bucketed read: a rollup level or the raw table.

A time range [start, end) is cut into pieces, widest rollup first:
- a rollup level serves the whole buckets of its step inside the range, up to
  its watermark (buckets before it are complete), except the buckets that
  hold late rows not yet folded in (pending invalidations, "stale");
- what it cannot serve (the cut edges of the range, the tail past its
  watermark, stale buckets) goes to the next finer level, and finally to the
  raw table.

Every reading in the range lands in exactly one piece, and every rollup
bucket used lies wholly inside the range, so regrouping the pieces by the
requested interval gives what aggregating the raw rows would (the interval is
a multiple of each level's step, and all buckets are epoch-aligned).

On TimescaleDB a level's watermark is unbounded: the continuous aggregates
are real-time (they aggregate the raw tail themselves). What is stale there
are the ranges its invalidation logs hold until the next refresh (history.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sensormesh_core.storage.time_buckets import ceil_to, floor_to

ALWAYS = datetime.max.replace(tzinfo=UTC)  # watermark of a real-time continuous aggregate
NEVER = datetime.min.replace(tzinfo=UTC)  # watermark of a rollup not materialized yet

Span = tuple[datetime, datetime]  # [start, end)


@dataclass(frozen=True, slots=True)
class Level:
    """A rollup usable for the requested interval."""

    width: str  # "1h", "1m"
    step: timedelta
    watermark: datetime  # its buckets before this are complete
    stale: tuple[Span, ...] = ()  # raw time spans this level alone misses (finer levels have them)


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of the range and where it is read from (`source` None: the raw table)."""

    source: str | None
    start: datetime
    end: datetime


def merge(spans: Sequence[Span]) -> list[Span]:
    """Overlapping or touching spans joined, sorted."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start < end:
            merged.append((start, end))
    return merged


def plan(start: datetime, end: datetime, levels: Sequence[Level], stale: Sequence[Span] = ()) -> list[Piece]:
    """Pieces covering [start, end) exactly once, in time order, adjacent ones of
    one source joined. `levels` widest first; `stale` are raw time spans whose
    rollup buckets miss rows."""
    pieces: list[Piece] = []
    for piece in _cover(start, end, list(levels), merge(stale)):
        if pieces and pieces[-1].source == piece.source and pieces[-1].end == piece.start:
            pieces[-1] = Piece(piece.source, pieces[-1].start, piece.end)
        else:
            pieces.append(piece)
    return pieces


def _cover(start: datetime, end: datetime, levels: list[Level], stale: list[Span]) -> list[Piece]:
    if start >= end:
        return []
    if not levels:
        return [Piece(None, start, end)]
    level, finer = levels[0], levels[1:]
    inner_start = ceil_to(start, level.step)
    inner_end = min(floor_to(end, level.step), _floor_mark(level))
    if inner_end <= inner_start:
        return _cover(start, end, finer, stale)
    holes = merge(
        [
            (max(floor_to(a, level.step), inner_start), min(ceil_to(b, level.step), inner_end))
            for a, b in (*stale, *level.stale)
            if a < inner_end and b > inner_start
        ]
    )
    pieces = _cover(start, inner_start, finer, stale)
    cursor = inner_start
    for hole_start, hole_end in holes:
        if cursor < hole_start:
            pieces.append(Piece(level.width, cursor, hole_start))
        pieces += _cover(hole_start, hole_end, finer, stale)
        cursor = hole_end
    if cursor < inner_end:
        pieces.append(Piece(level.width, cursor, inner_end))
    return pieces + _cover(inner_end, end, finer, stale)


def _floor_mark(level: Level) -> datetime:
    if level.watermark in (ALWAYS, NEVER):
        return level.watermark
    return floor_to(level.watermark, level.step)
