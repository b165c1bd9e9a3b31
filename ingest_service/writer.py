"""The batch transaction: rows and the device's mark, committed together.

One transaction per batch, on a pooled connection:

1. lock the device's `upload_offsets` row (FOR UPDATE): batches of one device
   commit one at a time, whichever stream or replica they came from; on plain
   PostgreSQL, take the rollup gate first, in the same statement
   (sensormesh_core/storage/rollup_gate.py);
2. read the mark and cut the batch there (`offsets.trim`);
3. COPY the rows (binary, one COPY per reading table), the refused readings
   into `dead_letters`, upsert `latest_values`, store thinning reports and
   input states;
4. move the mark to the batch's last sequence (with the latest values,
   reports and, on plain PostgreSQL, the late rows' rollup invalidations, in
   one statement); commit.

Partitions (plain PostgreSQL) are created before, in their own transaction:
DDL inside the data transaction would hold locks on the parent table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ingest_service.batch import ColumnBlock, PreparedBatch, Rejection
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

_LOCK_OFFSET = (
    "SELECT o.committed_sequence, d.status, d.create_time FROM upload_offsets o "
    "JOIN devices d ON d.device_id = o.device_id WHERE o.device_id = $1 FOR UPDATE OF o"
)
# With rollups kept by the service (plain PostgreSQL): the same, after taking the
# rollup gate, and the database clock read once the gate was granted
# (sensormesh_core/storage/rollup_gate.py). The gate comes first: the row lock
# is taken on the join's output, which needs the gate's row.
_LOCK_OFFSET_GATED = (
    f"WITH {GATE_CTE} SELECT o.committed_sequence, d.status, d.create_time, gate.now "
    "FROM gate, upload_offsets o JOIN devices d ON d.device_id = o.device_id "
    "WHERE o.device_id = $1 FOR UPDATE OF o"
)
_ADVANCE = "UPDATE upload_offsets SET committed_sequence = $2, update_time = now() WHERE device_id = $1"
# Everything a batch records besides its rows, and the mark, in one statement
# (one round trip): latest values (newest wins, so a replayed or back-filled
# older reading never replaces a newer value), thinning reports (once: a report
# is the same report when sensor, count and times match; the device's locked
# mark row serialises the check), input states (an older status never replaces
# a newer one), then the mark. Arrays may be empty; the mark only ever moves
# forward.
_RECORD_BATCH_TEMPLATE = """
WITH {late}latest AS (
  INSERT INTO latest_values (series_id, time, value, sequence)
  SELECT * FROM unnest($3::integer[], $4::timestamptz[], $5::float8[], $6::bigint[])
  ON CONFLICT (series_id) DO UPDATE
    SET time = EXCLUDED.time, value = EXCLUDED.value, sequence = EXCLUDED.sequence
    WHERE (latest_values.time, latest_values.sequence) <= (EXCLUDED.time, EXCLUDED.sequence)
), thinned AS (
  INSERT INTO thinning_reports (device_id, sensor, count, first_sample_time, last_sample_time, batch_last_sequence)
  SELECT $1, t.sensor, t.count, t.first_time, t.last_time, $16
  FROM unnest($7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[]) AS t(sensor, count, first_time, last_time)
  WHERE NOT EXISTS (
    SELECT 1 FROM thinning_reports r
    WHERE r.device_id = $1 AND r.sensor = t.sensor AND r.count = t.count
      AND r.first_sample_time = t.first_time AND r.last_sample_time = t.last_time
  )
), inputs AS (
  INSERT INTO device_inputs (device_id, input, state, last_error, error_count, observe_time)
  SELECT $1, i.* FROM unnest($11::text[], $12::smallint[], $13::text[], $14::bigint[], $15::timestamptz[]) AS i
  ON CONFLICT (device_id, input) DO UPDATE
    SET state = EXCLUDED.state, last_error = EXCLUDED.last_error,
        error_count = EXCLUDED.error_count, observe_time = EXCLUDED.observe_time
    WHERE device_inputs.observe_time <= EXCLUDED.observe_time
)
UPDATE upload_offsets SET committed_sequence = $2, update_time = now()
WHERE device_id = $1 AND committed_sequence < $2
"""
# Late rows (plain PostgreSQL): their (table, key, first, last) in
# rollup_invalidations, so the refresher recomputes buckets it already made.
_LATE = """late AS (
  INSERT INTO rollup_invalidations (source_table, key, first_time, last_time)
  SELECT * FROM unnest($17::text[], $18::integer[], $19::timestamptz[], $20::timestamptz[])
), """
_RECORD_BATCH = _RECORD_BATCH_TEMPLATE.format(late="")
_RECORD_BATCH_GATED = _RECORD_BATCH_TEMPLATE.format(late=_LATE)


@dataclass(frozen=True, slots=True)
class Commit:
    """The outcome of one batch."""

    mark: int  # the device's committed sequence after the transaction
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    signal: CommitSignal | None  # what the live feed should hear, if the mark moved
    gap: int = 0  # sequences between the old mark and the batch's first, never sent


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
        each batch takes the gate and records its late rows."""
        self._pool = pool
        self._catalog = catalog
        self._partitions = partitions
        self._tracer = tracer
        self._gated = rollup_gate
        self._lock_sql = _LOCK_OFFSET_GATED if rollup_gate else _LOCK_OFFSET
        self._record_sql = _RECORD_BATCH_GATED if rollup_gate else _RECORD_BATCH

    async def commit(self, batch: PreparedBatch) -> Commit:
        """Write `batch` exactly once. Raises NotFound, PermissionDenied or StaleCatalog."""
        async with self._pool.acquire() as conn:
            if self._partitions is not None and batch.min_time is not None and batch.max_time is not None:
                days = days_between(to_datetime(batch.min_time), to_datetime(batch.max_time))
                if self._partitions.missing(days):
                    await self._partitions.ensure(conn, days)
            async with conn.transaction():
                mark, late_before = await self._lock(conn, batch)
                if batch.numbered_by_service:
                    batch = renumber(batch, mark)
                trimmed = trim(batch, mark)
                late: list[LateRange] = []
                if late_before is not None and batch.min_time is not None and batch.min_time < late_before:
                    late = late_ranges(trimmed.rows, late_before) + block_late_ranges(trimmed, late_before)
                await self._write(conn, batch, trimmed, late)
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

    async def _lock(self, conn: asyncpg.Connection, batch: PreparedBatch) -> tuple[int, int | None]:
        """Lock the device's mark and check the device is still the one we know.

        Returns the mark and, behind the rollup gate, the time (PostgreSQL
        microseconds) before which rows are late.
        """
        row = await conn.fetchrow(self._lock_sql, batch.device_id)
        if row is None:
            self._catalog.forget(batch.device_id)
            raise NotFound(f"device {batch.device_id!r} does not exist")
        if row["status"] != DEVICE_STATUS_ACTIVE:
            raise PermissionDenied(f"device {batch.device_id!r} is disabled")
        known = self._catalog.view(batch.device_id).incarnation
        uses_ids = bool(batch.rows or batch.blocks or batch.latest)
        if uses_ids and known != micros(row["create_time"]):
            self._catalog.forget(batch.device_id)
            raise StaleCatalog(batch.device_id)
        late_before = micros(row["now"] - RECENT) if self._gated else None
        return int(row["committed_sequence"]), late_before

    async def _write(
        self, conn: asyncpg.Connection, batch: PreparedBatch, trimmed: Trimmed, late: list[LateRange]
    ) -> None:
        """Steps 3 and 4 of the module's transaction: the rows and refused
        readings by COPY, then the rest and the mark in one statement."""
        device_id = batch.device_id
        await self._copy_rows(conn, trimmed)
        if trimmed.rejected:
            await conn.copy_records_to_table(
                "dead_letters",
                records=[(device_id, r.sequence, r.field, r.reason, r.reading) for r in trimmed.rejected],
                columns=DEAD_LETTER_COLUMNS,
            )
        await self._record(conn, batch, trimmed, late)

    async def _copy_rows(self, conn: asyncpg.Connection, trimmed: Trimmed) -> None:
        """One binary COPY per reading table, each in its own client span, so a
        trace shows which table a batch's time went to. A columnar upload's
        blocks are encoded by numpy (`copy_binary`); rows by asyncpg."""
        blocks: dict[str, list[ColumnBlock]] = {}
        for block in trimmed.blocks:
            blocks.setdefault(block.table, []).append(block)
        for table in dict.fromkeys([*trimmed.rows, *blocks]):
            rows = trimmed.rows.get(table, [])
            table_blocks = blocks.get(table, [])
            with self._tracer.start_as_current_span(
                f"COPY {table}",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "postgresql",
                    "db.operation": "COPY",
                    "db.sql.table": table,
                    "db.rows": len(rows) + sum(map(len, table_blocks)),
                },
            ):
                if rows:
                    await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
                if table_blocks:
                    # A memoryview: asyncpg would take bytes for a file name.
                    await conn.copy_to_table(
                        table,
                        source=memoryview(encode(table_blocks)),
                        columns=COLUMNS[table],
                        format="binary",
                    )

    async def _record(
        self, conn: asyncpg.Connection, batch: PreparedBatch, trimmed: Trimmed, late: list[LateRange]
    ) -> None:
        """Latest values, thinning reports, input states, late ranges (behind
        the gate) and the mark: one statement, one round trip (`_RECORD_BATCH`)."""
        latest = trimmed.latest
        thinned = list(dict.fromkeys(batch.thinned))  # the same report twice in one batch is one report
        inputs = batch.inputs
        late_columns = _late_columns(late) if self._gated else ()
        await conn.execute(
            self._record_sql,
            batch.device_id,
            trimmed.mark,
            [v.series_id for v in latest],
            [v.time for v in latest],
            [v.value for v in latest],
            [v.sequence for v in latest],
            [t.sensor for t in thinned],
            [t.count for t in thinned],
            [t.first_time for t in thinned],
            [t.last_time for t in thinned],
            [i.input for i in inputs],
            [i.state for i in inputs],
            [i.last_error for i in inputs],
            [i.error_count for i in inputs],
            [i.observe_time for i in inputs],
            batch.last_sequence,
            *late_columns,
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
    """The late ranges as the gated statement's last four arrays ($17-$20)."""
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
