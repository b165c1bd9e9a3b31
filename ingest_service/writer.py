"""The batch transaction: rows and the devices' marks, committed together.

One transaction commits a group of batches, each of a different device (one
batch alone when nothing else is waiting; `group_commit` forms the groups), on
a pooled connection:

1. lock the devices' `upload_offsets` rows (FOR UPDATE, in device id order, so
   two groups never wait on each other in a cycle): batches of one device
   commit one at a time, whichever stream or replica they came from; on plain
   PostgreSQL, take the rollup gate first, in the same statement
   (sensormesh_core/storage/rollup_gate.py);
2. read each mark and cut its batch there (`offsets.trim`); a batch whose
   device is gone, disabled or registered again is left out with its error,
   and the others go on;
3. COPY the rows (binary, one COPY per reading table for the whole group), the
   refused readings into `dead_letters`, upsert `latest_values`, store thinning
   reports and input states;
4. move every mark to its batch's last sequence (with the latest values,
   reports and, on plain PostgreSQL, the late rows' rollup invalidations, in
   one statement); commit.

A group costs the round trips of one batch: on this project's 2-core machine a
round trip costs the service about 100 us of CPU and a transaction six of
them, as much as decoding 300 readings (docs/ingest.md, "Group commit").

Partitions (plain PostgreSQL) are created before, in their own transaction:
DDL inside the data transaction would hold locks on the parent table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ingest_service.batch import ColumnBlock, PreparedBatch, Rejection, Row
from ingest_service.catalog import SensorCatalog, StaleCatalog
from ingest_service.copy_binary import encode
from ingest_service.offsets import Trimmed, renumber, trim
from ingest_service.pg_time import micros, to_datetime
from sensormesh_core.errors import NotFound, PermissionDenied
from sensormesh_core.storage.live_signal import CommitSignal
from sensormesh_core.storage.partitions import PartitionManager, days_between
from sensormesh_core.storage.registry import DEVICE_STATUS_ACTIVE
from sensormesh_core.storage.rollup_gate import GATE_CTE, RECENT, LateRange, late_ranges
from sensormesh_core.storage.schema import MEASUREMENT_COLUMNS, MEASUREMENTS_TABLE, TYPED_TABLES

log = logging.getLogger(__name__)

COLUMNS: dict[str, tuple[str, ...]] = {t.table: t.columns for t in TYPED_TABLES} | {
    MEASUREMENTS_TABLE: MEASUREMENT_COLUMNS
}
DEAD_LETTER_COLUMNS = ("device_id", "sequence", "field", "reason", "reading")

_LOCK_OFFSETS = (
    "SELECT o.device_id, o.committed_sequence, d.status, d.create_time FROM upload_offsets o "
    "JOIN devices d ON d.device_id = o.device_id WHERE o.device_id = ANY($1::text[]) "
    "ORDER BY o.device_id FOR UPDATE OF o"
)
# With rollups kept by the service (plain PostgreSQL): the same, after taking the
# rollup gate, and the database clock read once the gate was granted
# (sensormesh_core/storage/rollup_gate.py). The gate comes first: the row locks
# are taken on the join's output, which needs the gate's row.
_LOCK_OFFSETS_GATED = (
    f"WITH {GATE_CTE} SELECT o.device_id, o.committed_sequence, d.status, d.create_time, gate.now "
    "FROM gate, upload_offsets o JOIN devices d ON d.device_id = o.device_id "
    "WHERE o.device_id = ANY($1::text[]) ORDER BY o.device_id FOR UPDATE OF o"
)
# Everything a group records besides its rows, and the marks, in one statement
# (one round trip): latest values (newest wins, so a replayed or back-filled
# older reading never replaces a newer value), thinning reports (once: a report
# is the same report when device, sensor, count and times match; the device's
# locked mark row serialises the check), input states (an older status never
# replaces a newer one), then the marks. Arrays may be empty; a mark only ever
# moves forward. A group holds one batch per device, so no row is touched twice.
_RECORD_GROUP_TEMPLATE = """
WITH {late}latest AS (
  INSERT INTO latest_values (series_id, time, value, sequence)
  SELECT * FROM unnest($3::integer[], $4::timestamptz[], $5::float8[], $6::bigint[])
  ON CONFLICT (series_id) DO UPDATE
    SET time = EXCLUDED.time, value = EXCLUDED.value, sequence = EXCLUDED.sequence
    WHERE (latest_values.time, latest_values.sequence) <= (EXCLUDED.time, EXCLUDED.sequence)
), thinned AS (
  INSERT INTO thinning_reports (device_id, sensor, count, first_sample_time, last_sample_time, batch_last_sequence)
  SELECT * FROM unnest($7::text[], $8::text[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::bigint[])
    AS t(device_id, sensor, count, first_time, last_time, batch_last)
  WHERE NOT EXISTS (
    SELECT 1 FROM thinning_reports r
    WHERE r.device_id = t.device_id AND r.sensor = t.sensor AND r.count = t.count
      AND r.first_sample_time = t.first_time AND r.last_sample_time = t.last_time
  )
), inputs AS (
  INSERT INTO device_inputs (device_id, input, state, last_error, error_count, observe_time)
  SELECT * FROM unnest($13::text[], $14::text[], $15::smallint[], $16::text[], $17::bigint[], $18::timestamptz[])
  ON CONFLICT (device_id, input) DO UPDATE
    SET state = EXCLUDED.state, last_error = EXCLUDED.last_error,
        error_count = EXCLUDED.error_count, observe_time = EXCLUDED.observe_time
    WHERE device_inputs.observe_time <= EXCLUDED.observe_time
)
UPDATE upload_offsets o SET committed_sequence = m.mark, update_time = now()
FROM unnest($1::text[], $2::bigint[]) AS m(device_id, mark)
WHERE o.device_id = m.device_id AND o.committed_sequence < m.mark
"""
# Late rows (plain PostgreSQL): their (table, key, first, last) in
# rollup_invalidations, so the refresher recomputes buckets it already made.
_LATE = """late AS (
  INSERT INTO rollup_invalidations (source_table, key, first_time, last_time)
  SELECT * FROM unnest($19::text[], $20::integer[], $21::timestamptz[], $22::timestamptz[])
), """
_RECORD_GROUP = _RECORD_GROUP_TEMPLATE.format(late="")
_RECORD_GROUP_GATED = _RECORD_GROUP_TEMPLATE.format(late=_LATE)

# Why a batch is left out of its group: it failed alone, the others go on.
BatchRefused = NotFound | PermissionDenied | StaleCatalog


@dataclass(frozen=True, slots=True)
class Commit:
    """The outcome of one batch."""

    mark: int  # the device's committed sequence after the transaction
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    signal: CommitSignal | None  # what the live feed should hear, if the mark moved
    gap: int = 0  # sequences between the old mark and the batch's first, never sent


@dataclass(frozen=True, slots=True)
class _Write:
    """One batch of a group, cut at its device's mark."""

    batch: PreparedBatch
    mark: int  # the mark before the transaction
    trimmed: Trimmed


class BatchWriter:
    """Commits prepared batches; one per process, shared by every stream."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        catalog: SensorCatalog,
        partitions: PartitionManager | None,
        tracer: trace.Tracer,
        *,
        rollup_gate: bool = False,
    ) -> None:
        """`rollup_gate`: the service keeps the rollups (plain PostgreSQL), so
        each transaction takes the gate and records its late rows."""
        self._pool = pool
        self._catalog = catalog
        self._partitions = partitions
        self._tracer = tracer
        self._gated = rollup_gate
        self._lock_sql = _LOCK_OFFSETS_GATED if rollup_gate else _LOCK_OFFSETS
        self._record_sql = _RECORD_GROUP_GATED if rollup_gate else _RECORD_GROUP

    async def commit_group(self, batches: Sequence[PreparedBatch]) -> list[Commit | BatchRefused]:
        """Write `batches`, each of a different device, exactly once in one
        transaction. Returns each batch's commit, or the error that left it
        out (NotFound, PermissionDenied, StaleCatalog); a database error fails
        the whole group and is raised."""
        if len({b.device_id for b in batches}) != len(batches):
            raise ValueError("a group holds at most one batch per device")
        async with self._pool.acquire() as conn:
            await self._ensure_partitions(conn, batches)
            async with conn.transaction():
                refused, writes, late = await self._lock(conn, batches)
                if writes:
                    await self._write(conn, writes, late)
        outcomes: dict[str, Commit | BatchRefused] = {
            **refused,
            **{w.batch.device_id: _commit(w) for w in writes},
        }
        return [outcomes[b.device_id] for b in batches]

    async def _ensure_partitions(self, conn: asyncpg.Connection, batches: Sequence[PreparedBatch]) -> None:
        """Create the partitions the group's rows need (plain PostgreSQL), before its transaction."""
        if self._partitions is None:
            return
        days: set[date] = set()
        for batch in batches:
            if batch.min_time is not None and batch.max_time is not None:
                days.update(days_between(to_datetime(batch.min_time), to_datetime(batch.max_time)))
        if self._partitions.missing(days):
            await self._partitions.ensure(conn, days)

    async def _lock(
        self, conn: asyncpg.Connection, batches: Sequence[PreparedBatch]
    ) -> tuple[dict[str, BatchRefused], list[_Write], list[LateRange]]:
        """Lock the devices' marks, check each device is still the one we know,
        and cut each batch at its mark. Returns the batches left out (with
        their errors), the writes, and the late rows (behind the rollup gate)."""
        rows = {r["device_id"]: r for r in await conn.fetch(self._lock_sql, [b.device_id for b in batches])}
        refused: dict[str, BatchRefused] = {}
        writes: list[_Write] = []
        late: list[LateRange] = []
        for batch in batches:
            row = rows.get(batch.device_id)
            error = self._refusal(batch, row)
            if error is not None:
                refused[batch.device_id] = error
                continue
            assert row is not None  # `_refusal` refuses a missing row
            mark = int(row["committed_sequence"])
            if batch.numbered_by_service:
                batch = renumber(batch, mark)
            trimmed = trim(batch, mark)
            writes.append(_Write(batch, mark, trimmed))
            if self._gated and batch.min_time is not None:
                late_before = micros(row["now"] - RECENT)
                if batch.min_time < late_before:
                    late += late_ranges(trimmed.rows, late_before) + block_late_ranges(trimmed, late_before)
        return refused, writes, late

    def _refusal(self, batch: PreparedBatch, row: asyncpg.Record | None) -> BatchRefused | None:
        """Why `batch` cannot be written to its device's locked row (None: the
        device is gone), if it cannot."""
        if row is None:
            self._catalog.forget(batch.device_id)
            return NotFound(f"device {batch.device_id!r} does not exist")
        if row["status"] != DEVICE_STATUS_ACTIVE:
            return PermissionDenied(f"device {batch.device_id!r} is disabled")
        known = self._catalog.view(batch.device_id).incarnation
        uses_ids = bool(batch.rows or batch.blocks or batch.latest)
        if uses_ids and known != micros(row["create_time"]):
            self._catalog.forget(batch.device_id)
            return StaleCatalog(batch.device_id)
        return None

    async def _write(self, conn: asyncpg.Connection, writes: list[_Write], late: list[LateRange]) -> None:
        """Steps 3 and 4 of the module's transaction: the rows and refused
        readings by COPY, then the rest and the marks in one statement."""
        await self._copy_rows(conn, [w.trimmed for w in writes])
        dead = [
            (w.batch.device_id, r.sequence, r.field, r.reason, r.reading)
            for w in writes
            for r in w.trimmed.rejected
        ]
        if dead:
            await conn.copy_records_to_table("dead_letters", records=dead, columns=DEAD_LETTER_COLUMNS)
        await self._record(conn, writes, late)

    async def _copy_rows(self, conn: asyncpg.Connection, cuts: list[Trimmed]) -> None:
        """One binary COPY per reading table for the whole group, each in its own
        client span, so a trace shows which table a group's time went to. A
        columnar upload's blocks are encoded by numpy (`copy_binary`); rows by asyncpg."""
        rows: dict[str, list[Row]] = {}
        blocks: dict[str, list[ColumnBlock]] = {}
        for trimmed in cuts:
            for table, table_rows in trimmed.rows.items():
                rows.setdefault(table, []).extend(table_rows)
            for block in trimmed.blocks:
                blocks.setdefault(block.table, []).append(block)
        for table in dict.fromkeys([*rows, *blocks]):
            table_rows = rows.get(table, [])
            table_blocks = blocks.get(table, [])
            with self._tracer.start_as_current_span(
                f"COPY {table}",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "postgresql",
                    "db.operation": "COPY",
                    "db.sql.table": table,
                    "db.rows": len(table_rows) + sum(map(len, table_blocks)),
                },
            ):
                if table_rows:
                    await conn.copy_records_to_table(table, records=table_rows, columns=COLUMNS[table])
                if table_blocks:
                    # A memoryview: asyncpg would take bytes for a file name.
                    await conn.copy_to_table(
                        table,
                        source=memoryview(encode(table_blocks)),
                        columns=COLUMNS[table],
                        format="binary",
                    )

    async def _record(self, conn: asyncpg.Connection, writes: list[_Write], late: list[LateRange]) -> None:
        """Latest values, thinning reports, input states, late ranges (behind
        the gate) and the marks: one statement, one round trip (`_RECORD_GROUP`)."""
        latest = [v for w in writes for v in w.trimmed.latest]
        # The same report twice in one batch is one report.
        thinned = [(w.batch, t) for w in writes for t in dict.fromkeys(w.batch.thinned)]
        inputs = [(w.batch.device_id, i) for w in writes for i in w.batch.inputs]
        late_columns = _late_columns(late) if self._gated else ()
        await conn.execute(
            self._record_sql,
            [w.batch.device_id for w in writes],
            [w.trimmed.mark for w in writes],
            [v.series_id for v in latest],
            [v.time for v in latest],
            [v.value for v in latest],
            [v.sequence for v in latest],
            [b.device_id for b, _ in thinned],
            [t.sensor for _, t in thinned],
            [t.count for _, t in thinned],
            [t.first_time for _, t in thinned],
            [t.last_time for _, t in thinned],
            [b.last_sequence for b, _ in thinned],
            [device for device, _ in inputs],
            [i.input for _, i in inputs],
            [i.state for _, i in inputs],
            [i.last_error for _, i in inputs],
            [i.error_count for _, i in inputs],
            [i.observe_time for _, i in inputs],
            *late_columns,
        )


def _commit(write: _Write) -> Commit:
    """A written batch's outcome; a gap in its device's numbering is logged."""
    batch, mark, trimmed = write.batch, write.mark, write.trimmed
    gap = max(0, batch.first_sequence - mark - 1)
    if gap:
        log.warning(
            "event=sequence_gap device=%s mark=%d first_sequence=%d missing=%d",
            batch.device_id,
            mark,
            batch.first_sequence,
            gap,
        )
    return Commit(
        mark=trimmed.mark,
        accepted=trimmed.accepted,
        duplicates=trimmed.duplicates,
        rejected=trimmed.rejected,
        signal=_signal(batch, mark, trimmed),
        gap=gap,
    )


def block_late_ranges(trimmed: Trimmed, horizon: int) -> list[LateRange]:
    """`late_ranges` for a columnar upload's blocks: per block, the first and
    last time of its rows older than `horizon` (vectorised)."""
    found: list[LateRange] = []
    for block in trimmed.blocks:
        times = block.time[block.time < horizon]
        if len(times):
            found.append(LateRange(block.table, block.key, int(times.min()), int(times.max())))
    return found


def _late_columns(late: list[LateRange]) -> tuple[list[object], ...]:
    """The late ranges as the gated statement's last four arrays ($19-$22)."""
    return (
        [r.table for r in late],
        [r.key for r in late],
        [r.first_time for r in late],
        [r.last_time for r in late],
    )


def _signal(batch: PreparedBatch, mark: int, trimmed: Trimmed) -> CommitSignal | None:
    """What the live feed hears: the mark's move from `mark` to the new mark.

    The range starts right after the old mark (not at the batch's first
    number), so a device's signals tile its sequence numbers and a query
    process can tell when one is still on its way from another replica. A
    move that stored no row (every reading refused) is signalled without a
    time range; a batch that moved nothing is not signalled.
    """
    if trimmed.mark <= mark:
        return None
    if not trimmed.accepted or batch.min_time is None or batch.max_time is None:
        return CommitSignal(batch.device_id, mark + 1, trimmed.mark, None, None)
    return CommitSignal(
        batch.device_id, mark + 1, trimmed.mark, to_datetime(batch.min_time), to_datetime(batch.max_time)
    )
