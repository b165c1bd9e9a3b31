"""From a request to a `PreparedBatch`: the batch-level checks, the hot decode,
sensors met for the first time, and the slow path for readings the fast
checks flagged.

Everything here happens before the batch's transaction, so that it overlaps
the database write of the previous batch (see `upload.py`). Whole-batch
problems raise InvalidArgument with BadRequest field violations; problems of
single readings become `Rejection`s that go to the dead-letter table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import asyncpg
from sensormesh.v1 import ingest_pb2, reading_pb2

from ingest_service.batch import InputRow, LatestValue, PreparedBatch, Rejection, Row, ThinningRow
from ingest_service.catalog import DeviceCatalog, SensorCatalog, Wanted
from ingest_service.checks import (
    Limits,
    column_arrays,
    limits,
    reading_problem,
    unknown_payload,
    upload_head_violations,
    write_head_violations,
)
from ingest_service.columns import ColumnsDecoded, Entry, column_field, decode_entries, element_reading
from ingest_service.decode import MAX_BATCH_VIOLATIONS, Decoded, decode_fast, decode_one
from ingest_service.offsets import range_violations
from ingest_service.pg_time import from_unix
from ingest_service.rules import ReadingRules, load_rules
from ingest_service.settings import IngestSettings
from sensormesh_core.errors import FieldViolation, InvalidArgument
from sensormesh_core.storage.schema import LINK_HEALTH, MEASUREMENTS_TABLE, TYPED_TABLES

log = logging.getLogger(__name__)

# Readings decoded between two turns of the event loop (about 0.5 ms of work).
DECODE_SLICE = 256
_time = itemgetter(0)
_sequence = itemgetter(1)
_sequence_of = attrgetter("sequence")
_SCHEMA_BY_TABLE = {t.table: t for t in TYPED_TABLES}


class Preparer:
    """Turns requests into prepared batches for one process."""

    def __init__(
        self,
        settings: IngestSettings,
        catalog: SensorCatalog,
        pool: asyncpg.Pool,
        rules: ReadingRules | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._pool = pool
        self._rules = rules
        self._clock = clock

    def limits(self) -> Limits:
        return limits(self._clock(), self._settings, self._rules)

    def upload_head_violations(self, request: ingest_pb2.UploadReadingsRequest) -> list[FieldViolation]:
        """The batch's own fields (not its readings): device id, range, size, reports."""
        return upload_head_violations(request, self._settings)

    def write_head_violations(self, request: ingest_pb2.WriteReadingsRequest) -> list[FieldViolation]:
        """The call's own fields (not its readings): device id, count, numbering."""
        return write_head_violations(request, self._settings)

    async def upload(
        self, request: ingest_pb2.UploadReadingsRequest, *, checked: bool = False
    ) -> PreparedBatch:
        """Prepare one UploadReadings batch; raises InvalidArgument for a malformed batch.

        With `checked`, the caller has already applied `upload_head_violations`.
        """
        violations = [] if checked else self.upload_head_violations(request)
        if violations:
            raise InvalidArgument(_summary("invalid batch", violations), violations)
        if request.columns:
            batch = await self._prepare_columns(request)
        else:
            batch = await self._prepare(
                request.device_id, request.first_sequence, request.last_sequence, request.readings
            )
        batch.thinned = [
            ThinningRow(
                t.sensor,
                t.count,
                from_unix(t.first_sample_time.seconds, t.first_sample_time.nanos),
                from_unix(t.last_sample_time.seconds, t.last_sample_time.nanos),
            )
            for t in request.thinned
        ]
        batch.inputs = [
            InputRow(
                s.input,
                s.state,
                s.last_error,
                s.error_count,
                from_unix(s.observe_time.seconds, s.observe_time.nanos),
            )
            for s in request.input_statuses
        ]
        return batch

    async def write(
        self, request: ingest_pb2.WriteReadingsRequest, *, checked: bool = False
    ) -> PreparedBatch:
        """Prepare a WriteReadings call; raises InvalidArgument when it is malformed or
        when every reading is refused (nothing is stored then)."""
        violations = [] if checked else self.write_head_violations(request)
        if violations:
            raise InvalidArgument(_summary("invalid request", violations), violations)
        count = len(request.readings)
        first = request.first_sequence or 1
        items = [
            reading_pb2.SequencedReading(sequence=first + i, reading=r)
            for i, r in enumerate(request.readings)
        ]
        batch = await self._prepare(request.device_id, first, first + count - 1, items)
        batch.numbered_by_service = request.first_sequence == 0
        if batch.rejected and len(batch.rejected) == count:
            refused = [FieldViolation(_request_path(r), r.reason) for r in batch.rejected]
            raise InvalidArgument(_summary("every reading was refused", refused), refused)
        return batch

    async def _prepare(self, device_id: str, first: int, last: int, readings: Sequence[Any]) -> PreparedBatch:
        limits = self.limits()
        device = self._catalog.view(device_id)
        out = Decoded()
        if self._rules is not None:
            await self._decode_slices(readings, first, last, device, limits, out)
        else:
            out.violations = range_violations(first, last, [r.sequence for r in readings])
            out.flagged = list(range(len(readings)))
        if out.violations:
            raise InvalidArgument(
                _summary("readings out of order or outside the batch", out.violations), out.violations
            )
        reordered = bool(out.pending)
        if out.pending:
            await self._decode_pending(device_id, first, last, readings, out, limits)
        rejected, passed = self._slow_path(readings, sorted(out.flagged), limits)
        if passed:
            reordered = True
            await self._decode_passed(device_id, readings, passed, out)
        rows = {table: table_rows for table, table_rows in out.rows.items() if table_rows}
        if reordered:
            for table_rows in rows.values():
                table_rows.sort(key=_sequence)
        times = [
            t
            for table_rows in rows.values()
            for t in (min(map(_time, table_rows)), max(map(_time, table_rows)))
        ]
        return PreparedBatch(
            device_id=device_id,
            first_sequence=first,
            last_sequence=last,
            reading_count=len(readings),
            rows=rows,
            latest=self._latest(device_id, out),
            rejected=rejected,
            min_time=min(times) if times else None,
            max_time=max(times) if times else None,
        )

    async def _prepare_columns(self, request: ingest_pb2.UploadReadingsRequest) -> PreparedBatch:
        """A columnar batch: whole-array checks, blocks per entry, the row path's slow path for
        the elements the array checks flagged."""
        device_id, first, last = request.device_id, request.first_sequence, request.last_sequence
        columns = request.columns
        entries, violations = column_arrays(columns, first, last)
        if violations:
            raise InvalidArgument(_summary("malformed columns", violations), violations)
        rules = self._rules or load_rules()  # UnsupportedRules: columns need the fast rules
        limits = self.limits()
        decoded = ColumnsDecoded(Decoded(), [], [])
        decode_entries(entries, columns, self._catalog.view(device_id), rules, limits.fast, decoded)
        if decoded.pending:
            pending = [e for e in entries if e.index in set(decoded.pending)]
            await self._resolve(device_id, _wanted(columns, pending))
            decoded.pending = []
            decode_entries(pending, columns, self._catalog.view(device_id), rules, limits.fast, decoded)
        out = decoded.out
        rejected: list[Rejection] = []
        if decoded.flagged:
            by_index = {e.index: e for e in entries}
            items = [element_reading(columns[i], by_index[i], j) for i, j in decoded.flagged]
            refused, passed = self._slow_path(items, list(range(len(items))), limits)
            for r in refused:
                i, j = decoded.flagged[r.index]
                field, reason, reading = column_field(f"columns[{i}]", r.field, j), r.reason, r.reading
                if by_index[i].kind is None:  # a payload kind of newer contracts
                    field, reason = f"columns[{i}].payload", unknown_payload(columns[i]) or reason
                    if j == 0:  # the entry whole, its unknown fields too, once
                        reading = columns[i].SerializeToString()
                rejected.append(Rejection(j, r.sequence, field, reason, reading))
            rejected.sort(key=_sequence_of)
            if passed:
                await self._decode_passed(device_id, items, passed, out)
                for table_rows in out.rows.values():
                    table_rows.sort(key=_sequence)
        rows = {table: table_rows for table, table_rows in out.rows.items() if table_rows}
        times = [int(t) for b in out.blocks for t in (b.time.min(), b.time.max())] + [
            t
            for table_rows in rows.values()
            for t in (min(map(_time, table_rows)), max(map(_time, table_rows)))
        ]
        return PreparedBatch(
            device_id=device_id,
            first_sequence=first,
            last_sequence=last,
            reading_count=sum(len(e.sequence) for e in entries),
            rows=rows,
            blocks=out.blocks,
            latest=self._latest(device_id, out),
            rejected=rejected,
            min_time=min(times) if times else None,
            max_time=max(times) if times else None,
        )

    async def _decode_slices(
        self,
        readings: Sequence[Any],
        first: int,
        last: int,
        device: DeviceCatalog,
        limits: Limits,
        out: Decoded,
    ) -> None:
        """The hot loop over a batch, a slice at a time, letting the event loop run
        in between: other streams' database round trips wait for at most one
        slice instead of a whole batch."""
        assert self._rules is not None
        previous = first - 1
        for start in range(0, len(readings), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            chunk = readings[start : start + DECODE_SLICE]
            previous = decode_fast(
                enumerate(chunk, start), previous, last, device, self._rules, limits.fast, out
            )
            if len(out.violations) >= MAX_BATCH_VIOLATIONS:
                return

    async def _resolve(self, device_id: str, wanted: Wanted) -> None:
        async with self._pool.acquire() as conn:
            await self._catalog.resolve(conn, device_id, wanted)

    async def _decode_pending(
        self, device_id: str, first: int, last: int, readings: Sequence[Any], out: Decoded, limits: Limits
    ) -> None:
        """Readings whose sensor or series is new: create it if the names are valid, then decode."""
        assert self._rules is not None
        rules = self._rules
        typed: set[tuple[str, str]] = set()
        measured: set[tuple[str, str, str]] = set()
        ready: list[int] = []
        for index in out.pending:
            reading = readings[index].reading
            if not rules.names_ok(reading):
                out.flagged.append(index)
                continue
            kind = reading.WhichOneof("payload")
            if kind == "measurement":
                m = reading.measurement
                measured.add((reading.sensor, m.name, m.unit))
            else:
                typed.add((kind, reading.sensor))
            ready.append(index)
        out.pending = []
        if typed or measured:
            await self._resolve(device_id, Wanted(frozenset(typed), frozenset(measured)))
        device = self._catalog.view(device_id)
        decode_fast(((i, readings[i]) for i in ready), first - 1, last, device, rules, limits.fast, out)
        if out.pending:  # cannot happen once resolved; never loop on it
            out.flagged += out.pending
            out.pending = []

    def _slow_path(
        self, readings: Sequence[Any], flagged: list[int], limits: Limits
    ) -> tuple[list[Rejection], list[int]]:
        """protovalidate and the service's own limits for each flagged reading."""
        rejected: list[Rejection] = []
        passed: list[int] = []
        for index in flagged:
            item = readings[index]
            problem = reading_problem(item, limits, self._settings)
            if problem is None:
                passed.append(index)
            else:
                field, reason = problem
                rejected.append(
                    Rejection(index, item.sequence, field, reason, item.reading.SerializeToString())
                )
        return rejected, passed

    async def _decode_passed(
        self, device_id: str, readings: Sequence[Any], passed: list[int], out: Decoded
    ) -> None:
        """Readings the fast checks flagged but protovalidate and the limits passed."""
        device = self._catalog.view(device_id)
        missing: list[int] = []
        for index in passed:
            item = readings[index]
            stamp = item.reading.sample_time
            if not decode_one(index, item, from_unix(stamp.seconds, stamp.nanos), device, out):
                missing.append(index)
        if not missing:
            return
        typed: set[tuple[str, str]] = set()
        measured: set[tuple[str, str, str]] = set()
        for index in missing:
            reading = readings[index].reading
            kind = reading.WhichOneof("payload")
            if kind == "measurement":
                measured.add((reading.sensor, reading.measurement.name, reading.measurement.unit))
            else:
                typed.add((kind, reading.sensor))
        await self._resolve(device_id, Wanted(frozenset(typed), frozenset(measured)))
        device = self._catalog.view(device_id)
        for index in missing:
            item = readings[index]
            stamp = item.reading.sample_time
            if not decode_one(index, item, from_unix(stamp.seconds, stamp.nanos), device, out):
                raise RuntimeError(f"sensor of reading {index} still unknown after resolving it")

    def _latest(self, device_id: str, out: Decoded) -> list[LatestValue]:
        """One candidate per series: the newest reading of the batch (latest_values)."""
        device = self._catalog.view(device_id)
        latest = [
            LatestValue(series_id, row[0], row[3], row[1])
            for series_id, row in out.latest[MEASUREMENTS_TABLE].items()
        ]
        for table, by_sensor in out.latest.items():
            schema = _SCHEMA_BY_TABLE.get(table)
            if schema is None or table == LINK_HEALTH.table:
                continue
            for sensor_id, row in by_sensor.items():
                for quantity, value in zip(schema.quantities, row[3:], strict=True):
                    if value is not None:
                        series_id = device.typed_series[(sensor_id, quantity.name)]
                        latest.append(LatestValue(series_id, row[0], float(value), row[1]))
        link_rows = out.rows[LINK_HEALTH.table] + out.link_newest
        if link_rows:
            latest += _newest_per_quantity(link_rows, device)
        return latest


def _newest_per_quantity(rows: list[Row], device: DeviceCatalog) -> list[LatestValue]:
    """Link health's latest values, each quantity from the newest row that has it: a
    battery read and an RSSI often come in readings of their own, and the newest row
    alone would leave out the other. A pass over the batch's link-health rows only
    (a sensor sends one every minute or so); other kinds keep the newest row."""
    newest: dict[tuple[int, int], Row] = {}
    for row in rows:
        for position, value in enumerate(row[3:]):
            if value is not None:
                key = (row[2], position)
                found = newest.get(key)
                if found is None or (row[0], row[1]) >= (found[0], found[1]):
                    newest[key] = row
    quantities = LINK_HEALTH.quantities
    return [
        LatestValue(
            device.typed_series[(sensor_id, quantities[position].name)],
            row[0],
            float(row[3 + position]),
            row[1],
        )
        for (sensor_id, position), row in newest.items()
    ]


def _wanted(columns: Sequence[Any], entries: list[Entry]) -> Wanted:
    """The sensors and series of columnar entries not in the catalog yet (names already checked)."""
    typed: set[tuple[str, str]] = set()
    measured: set[tuple[str, str, str]] = set()
    for entry in entries:
        message = columns[entry.index]
        if entry.kind == "measurement":
            measured.add((message.sensor, message.measurement.name, message.measurement.unit))
        elif entry.kind is not None:
            typed.add((entry.kind, message.sensor))
    return Wanted(frozenset(typed), frozenset(measured))


def _summary(what: str, violations: list[FieldViolation]) -> str:
    shown = ", ".join(v.field or "(request)" for v in violations[:5])
    more = f" and {len(violations) - 5} more" if len(violations) > 5 else ""
    return f"{what}: {shown}{more}"


def _request_path(rejection: Rejection) -> str:
    """A rejection's field as a path in a WriteReadingsRequest (`readings[3].imu.x`)."""
    field = rejection.field.removeprefix("reading").removeprefix(".")
    return f"readings[{rejection.index}]" + (f".{field}" if field else "")
