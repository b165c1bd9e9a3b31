"""What a batch becomes before it is written: rows per table, refused readings,
latest values, reports. Built by `prepare`, cut at the device's mark by
`offsets.trim`, written by `writer`.

Times are PostgreSQL microseconds (`pg_time`); rows are tuples in the column
order of `sensormesh_core.storage.schema`, sorted by sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Row = tuple[Any, ...]

# Position of `sequence` in every reading row (schema.KEY_COLUMNS and MEASUREMENT_COLUMNS).
SEQUENCE = 1


@dataclass(frozen=True, slots=True)
class ColumnBlock:
    """Rows of one table and one key (sensor or series) as columns: what a
    columnar upload entry becomes, never a Python object per reading.

    `time` is PostgreSQL microseconds (int64), `sequence` strictly increasing
    (int64); `values` holds one array per quantity of the table in column
    order (float32 for real, int64 for bigint, float64 for double precision),
    None where every row is NULL.
    """

    table: str
    key: int
    time: npt.NDArray[np.int64]
    sequence: npt.NDArray[np.int64]
    values: tuple[npt.NDArray[Any] | None, ...]

    def __len__(self) -> int:
        return len(self.sequence)

    def tail(self, start: int) -> ColumnBlock:
        """The rows from `start` on."""
        return ColumnBlock(
            self.table,
            self.key,
            self.time[start:],
            self.sequence[start:],
            tuple(None if v is None else v[start:] for v in self.values),
        )

    def row(self, index: int) -> Row:
        """Row `index` as the row form's tuple (Python scalars, None for NULL)."""
        return (
            int(self.time[index]),
            int(self.sequence[index]),
            self.key,
            *(None if v is None else v[index].item() for v in self.values),
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """A reading the service refused, and why."""

    index: int  # in its batch
    sequence: int
    field: str  # path from the SequencedReading, e.g. "reading.imu.acceleration_x_mps2"
    reason: str
    reading: bytes  # the serialized sensormesh.v1.Reading, kept in dead_letters


@dataclass(frozen=True, slots=True)
class ThinningRow:
    sensor: str
    count: int
    first_time: int
    last_time: int


@dataclass(frozen=True, slots=True)
class InputRow:
    input: str
    state: int
    last_error: str
    error_count: int
    observe_time: int


@dataclass(frozen=True, slots=True)
class LatestValue:
    """A candidate for `latest_values`: the newest reading of a series in the batch."""

    series_id: int
    time: int
    value: float
    sequence: int


@dataclass(slots=True)
class PreparedBatch:
    """A decoded, validated batch of one device, ready to commit.

    With `numbered_by_service` the sequences are relative (1..n): WriteReadings
    without `first_sequence`; the writer shifts them past the device's mark.
    """

    device_id: str
    first_sequence: int
    last_sequence: int
    reading_count: int
    rows: dict[str, list[Row]] = field(default_factory=dict)
    # A columnar upload's rows (`rows` then holds only readings the slow path passed).
    blocks: list[ColumnBlock] = field(default_factory=list)
    latest: list[LatestValue] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)  # sorted by sequence
    thinned: list[ThinningRow] = field(default_factory=list)
    inputs: list[InputRow] = field(default_factory=list)
    min_time: int | None = None  # over rows, for partitions and the live signal
    max_time: int | None = None
    numbered_by_service: bool = False
    joined: int = 1  # how many of its stream's batches this is (`joined`)


def follows(batch: PreparedBatch, previous: PreparedBatch) -> bool:
    """Whether `batch` starts right after `previous` ends (consecutive batches of one device's
    numbering, which `joined` can commit as one)."""
    return (
        batch.device_id == previous.device_id
        and not batch.numbered_by_service
        and not previous.numbered_by_service
        and batch.first_sequence == previous.last_sequence + 1
    )


def joined(batches: Sequence[PreparedBatch]) -> PreparedBatch:
    """Consecutive batches of one device (each `follows` the one before) as one batch, stored as
    they would be one after the other: rows, blocks, refused readings and latest candidates in
    order (`offsets.trim` keeps each series' newest above the mark), the same thinning report
    once, and per input only the newest state, as the writer's upserts would leave it (one
    statement may touch a row only once)."""
    first, last = batches[0], batches[-1]
    rows: dict[str, list[Row]] = {}
    for batch in batches:
        for table, table_rows in batch.rows.items():
            rows.setdefault(table, []).extend(table_rows)
    inputs: dict[str, InputRow] = {}
    for state in (i for b in batches for i in b.inputs):
        held_state = inputs.get(state.input)
        if held_state is None or held_state.observe_time <= state.observe_time:
            inputs[state.input] = state
    min_times = [b.min_time for b in batches if b.min_time is not None]
    max_times = [b.max_time for b in batches if b.max_time is not None]
    return PreparedBatch(
        device_id=first.device_id,
        first_sequence=first.first_sequence,
        last_sequence=last.last_sequence,
        reading_count=sum(b.reading_count for b in batches),
        rows=rows,
        blocks=[block for b in batches for block in b.blocks],
        latest=[value for b in batches for value in b.latest],  # `offsets.trim` keeps the newest
        rejected=[r for b in batches for r in b.rejected],
        thinned=list(dict.fromkeys(t for b in batches for t in b.thinned)),
        inputs=list(inputs.values()),
        min_time=min(min_times, default=None),
        max_time=max(max_times, default=None),
        joined=sum(b.joined for b in batches),
    )
