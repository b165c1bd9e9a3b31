"""The exactly-once rule, as pure functions: what of a batch to keep given the
device's mark, and how the mark moves.

The writer locks the device's `upload_offsets` row, reads the mark, and
applies `trim`: every reading numbered at or below the mark was committed
before (by an earlier batch, a replay, or the same batch on another stream)
and is acknowledged as a duplicate; the rest is written, and the mark moves
to the batch's last sequence in the same transaction. The hypothesis tests in
tests/ingest_service/test_offsets.py drive these functions with arbitrary
replays and overlaps.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter

import numpy as np

from ingest_service.batch import SEQUENCE, ColumnBlock, LatestValue, PreparedBatch, Rejection, Row
from sensormesh_core.errors import FieldViolation

_sequence_of_row = itemgetter(SEQUENCE)
_sequence_of = attrgetter("sequence")


def range_violations(
    first: int, last: int, sequences: list[int], *, limit: int = 10, items: str = "readings"
) -> list[FieldViolation]:
    """Items out of order or outside [first, last], as `readings[i].sequence` violations
    (`items` names the repeated field: "frames" for a frame batch)."""
    found: list[FieldViolation] = []
    previous = first - 1
    for index, sequence in enumerate(sequences):
        if sequence <= previous or sequence > last:
            found.append(FieldViolation(f"{items}[{index}].sequence", describe(sequence, previous, last)))
            if len(found) >= limit:
                break
        else:
            previous = sequence
    return found


def describe(sequence: int, previous: int, last: int) -> str:
    """Why a reading's sequence breaks its batch."""
    if sequence > last:
        return f"{sequence} is after the batch's last_sequence {last}"
    return f"{sequence} must be greater than {previous} (strictly increasing sequence order)"


def next_mark(mark: int, last_sequence: int) -> int:
    """The mark after committing a batch that ends at `last_sequence`."""
    return max(mark, last_sequence)


def cut(rows: list[Row], mark: int) -> int:
    """Index of the first row numbered above `mark` (rows sorted by sequence)."""
    return bisect_right(rows, mark, key=_sequence_of_row)


@dataclass(frozen=True, slots=True)
class Trimmed:
    """The part of a batch above the mark."""

    rows: dict[str, list[Row]]
    latest: list[LatestValue]
    rejected: list[Rejection]
    accepted: int  # readings to store
    duplicates: int  # readings at or below the mark
    mark: int  # the mark after commit
    blocks: list[ColumnBlock] = field(default_factory=list)  # a columnar upload's rows above the mark


def trim(batch: PreparedBatch, mark: int) -> Trimmed:
    """Keep what lies above `mark`; count the rest as duplicates."""
    rows: dict[str, list[Row]] = {}
    duplicates = 0
    for table, table_rows in batch.rows.items():
        index = cut(table_rows, mark)
        duplicates += index
        if index < len(table_rows):
            rows[table] = table_rows if index == 0 else table_rows[index:]
    blocks: list[ColumnBlock] = []
    for block in batch.blocks:  # each block's sequences strictly increase
        index = int(np.searchsorted(block.sequence, mark, side="right"))
        duplicates += index
        if index < len(block):
            blocks.append(block if index == 0 else block.tail(index))
    rejected_cut = bisect_right(batch.rejected, mark, key=_sequence_of)
    duplicates += rejected_cut
    # A latest candidate at or below the mark was applied when it was first
    # committed; every row left in the batch is older than it.
    latest = newest_per_series(value for value in batch.latest if value.sequence > mark)
    accepted = sum(len(table_rows) for table_rows in rows.values()) + sum(map(len, blocks))
    return Trimmed(
        rows=rows,
        latest=latest,
        rejected=batch.rejected[rejected_cut:],
        accepted=accepted,
        duplicates=duplicates,
        mark=next_mark(mark, batch.last_sequence),
        blocks=blocks,
    )


def newest_per_series(values: Iterable[LatestValue]) -> list[LatestValue]:
    """Each series' newest candidate by (time, sequence), as `latest_values`' upsert keeps it: a
    batch has one per series, batches joined (`batch.joined`) one per series and batch."""
    newest: dict[int, LatestValue] = {}
    for value in values:
        held = newest.get(value.series_id)
        if held is None or (held.time, held.sequence) <= (value.time, value.sequence):
            newest[value.series_id] = value
    return list(newest.values())


def renumber(batch: PreparedBatch, offset: int) -> PreparedBatch:
    """The batch with every sequence moved up by `offset` (service-numbered writes)."""
    if offset == 0:
        return batch

    def shift(rows: list[Row]) -> list[Row]:
        return [(row[0], row[1] + offset, *row[2:]) for row in rows]

    return replace(
        batch,
        first_sequence=batch.first_sequence + offset,
        last_sequence=batch.last_sequence + offset,
        rows={table: shift(rows) for table, rows in batch.rows.items()},
        latest=[replace(value, sequence=value.sequence + offset) for value in batch.latest],
        rejected=[replace(r, sequence=r.sequence + offset) for r in batch.rejected],
        numbered_by_service=False,
    )
