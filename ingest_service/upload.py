"""One UploadReadings stream, pipelined: while batch N is in its database
transaction, batch N+1 is decoded and validated.

Two tasks share a queue. The reader takes messages off the stream,
authorizes and prepares them (CPU, in this process); the writer commits them
in order (I/O, in PostgreSQL). Batches of one stream commit strictly in the
order they arrived: if N+1 committed before N failed, the mark would pass
readings that were never stored. `pipeline_depth` bounds how many prepared
batches wait, so a fast device cannot fill the server's memory. Batches that
wait when the writer comes back, each continuing the numbering of the one
before, commit as one (`batch.joined`): a transaction's round trips and
commit are paid once for all of them.

When the stream ends badly (a malformed batch, the client going away, the
server shutting down), batches received before are still committed: the
device learns how far from GetUploadOffset and resends the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from opentelemetry import trace
from sensormesh.v1 import ingest_pb2

from ingest_service.app import IngestApp
from ingest_service.batch import PreparedBatch, Rejection, follows, joined
from ingest_service.group_commit import GROUP_READINGS
from ingest_service.writer import Commit
from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import FieldViolation, InvalidArgument, Unavailable

# Rejected readings described in one response (the contract's limit).
log = logging.getLogger(__name__)

MAX_REPORTED_REJECTIONS = 100
_STOP = object()


@dataclass(slots=True)
class Tally:
    """What a stream or call achieved."""

    mark: int | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected_count: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, commit: Commit) -> None:
        self.mark = commit.mark
        self.accepted += commit.accepted
        self.duplicates += commit.duplicates
        self.rejected_count += len(commit.rejected)
        room = MAX_REPORTED_REJECTIONS - len(self.rejected)
        if room > 0:
            self.rejected += commit.rejected[:room]


@dataclass(slots=True)
class _Item:
    """A prepared batch on its way to the writer, with its span."""

    request: ingest_pb2.UploadReadingsRequest
    batch: PreparedBatch
    span: trace.Span
    started: float
    readings: int  # as the request counts them: what the stream's room holds for it


def batch_span(app: IngestApp, rpc: str, device_id: str, readings: int, first: int, last: int) -> trace.Span:
    """The span covering one batch's preparation and commit (the database spans are its children)."""
    return app.tracer.start_span(
        "ingest batch",
        attributes={
            "rpc.method": rpc,
            "sensormesh.device_id": device_id,
            "sensormesh.batch.readings": readings,
            "sensormesh.batch.first_sequence": first,
            "sensormesh.batch.last_sequence": last,
        },
    )


def end_batch_span(span: trace.Span, commit: Commit, *, joined: int = 1) -> None:
    """End a batch's span with its commit's figures (those of the `joined` batches committed
    together, when more than one)."""
    if joined > 1:
        span.set_attribute("sensormesh.batch.joined", joined)
    span.set_attribute("sensormesh.batch.rows_written", commit.accepted)
    span.set_attribute("sensormesh.batch.rejected", len(commit.rejected))
    span.set_attribute("sensormesh.batch.duplicates", commit.duplicates)
    span.set_attribute("sensormesh.batch.committed_sequence", commit.mark)
    span.end()


def _reading_count(request: ingest_pb2.UploadReadingsRequest) -> int:
    return len(request.readings) + sum(len(c.sequence_deltas) for c in request.columns)


def _end_spans(run: list[_Item], exc: BaseException) -> None:
    """End the spans of batches that failed with `exc` (or were not committed because of it)."""
    for item in run:
        item.span.record_exception(exc)
        item.span.end()


class UploadStream:
    """Runs one UploadReadings call for the device `owner` authenticated as."""

    def __init__(self, app: IngestApp, owner: Principal) -> None:
        self._app = app
        self._owner = owner
        self._device_id: str | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._slots = asyncio.Semaphore(app.settings.ingest_pipeline_depth)
        # Readings decoded and not yet committed: at most two of the largest batches' worth, as
        # when the pipeline held two, whatever the depth (which then serves smaller batches).
        self._room = 2 * app.settings.ingest_max_batch_readings
        self._held_readings = 0
        self._freed = asyncio.Event()
        self._preparing: asyncio.Task[None] | None = None
        self.tally = Tally()

    async def run(
        self, requests: AsyncIterator[ingest_pb2.UploadReadingsRequest]
    ) -> ingest_pb2.UploadReadingsResponse:
        writer = asyncio.create_task(self._write_all(), name=f"upload-writer-{self._owner.device_id}")
        self._app.track(writer)  # batches already received commit even if this call is cancelled
        try:
            stopped = await self._read_all(requests, writer)
        except asyncio.CancelledError:
            self._stop_after_preparing()
            raise
        except Exception:
            self._queue.put_nowait(_STOP)
            with contextlib.suppress(Exception):
                await asyncio.shield(writer)  # commit what came before the bad batch
            raise
        self._queue.put_nowait(_STOP)
        await writer
        if stopped:
            raise Unavailable(
                f"the ingest service is shutting down; committed through {self.tally.mark or 'nothing new'}: "
                "resume from GetUploadOffset",
                reason="SHUTTING_DOWN",
            )
        return await self._response()

    async def _read_all(
        self, requests: AsyncIterator[ingest_pb2.UploadReadingsRequest], writer: asyncio.Task[None]
    ) -> bool:
        """Prepare batches until the stream ends; True if stopped by shutdown."""
        stopping = asyncio.ensure_future(self._app.stopping.wait())
        receive: asyncio.Future[ingest_pb2.UploadReadingsRequest] | None = None
        try:
            iterator = aiter(requests)
            while True:
                receive = asyncio.ensure_future(anext(iterator))
                await asyncio.wait({receive, writer, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    return not writer.done()
                try:
                    request = receive.result()
                except StopAsyncIteration:
                    return False
                if writer.done():
                    return False
                await self._slots.acquire()
                readings = _reading_count(request)
                await self._hold(readings)
                # Shielded: a batch received before the call is cancelled (gRPC ends it when a
                # larger message than allowed arrives next) still reaches the writer.
                preparing = asyncio.create_task(self._prepare(request, readings))
                self._app.track(preparing)  # the server's close waits for it too
                self._preparing = preparing
                await asyncio.shield(preparing)
        finally:
            stopping.cancel()
            if receive is not None and not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # the call is over
                    await receive

    def _stop_after_preparing(self) -> None:
        """End the writer once the batch being prepared, if any, is queued (or failed)."""
        preparing = self._preparing
        if preparing is None or preparing.done():
            self._queue.put_nowait(_STOP)
            return

        def stop(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.info(
                    "event=upload_batch_dropped device_id=%s reason=%r", self._device_id, done.exception()
                )
            self._queue.put_nowait(_STOP)

        preparing.add_done_callback(stop)

    async def _prepare(self, request: ingest_pb2.UploadReadingsRequest, readings: int) -> None:
        app = self._app
        head = app.preparer.upload_head_violations(request)
        if head:
            raise InvalidArgument("invalid batch: " + ", ".join(v.field for v in head), head)
        if self._device_id is not None and request.device_id != self._device_id:
            raise InvalidArgument(
                "device_id changed within the stream",
                [FieldViolation("device_id", f"must be {self._device_id!r} in every batch of a stream")],
            )
        app.auth.authorize(self._owner, request.device_id)
        self._device_id = request.device_id
        started = time.perf_counter()
        span = batch_span(
            app,
            "UploadReadings",
            request.device_id,
            readings,
            request.first_sequence,
            request.last_sequence,
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                batch = await app.preparer.upload(request, checked=True)
        except BaseException as exc:
            span.record_exception(exc)
            span.end()
            raise
        self._queue.put_nowait(_Item(request, batch, span, started, readings))
        app.batches_prepared += 1

    async def _write_all(self) -> None:
        """Commit the prepared batches in order; those already waiting when the writer
        comes back, each starting where the one before ends, as one (`_next_run`)."""
        held: Any = None  # taken off the queue, not joined: the next run starts with it
        while True:
            item = held if held is not None else await self._queue.get()
            if item is _STOP:
                return
            run, held = self._next_run(item)
            try:
                await self._commit(run)
            finally:
                for done in run:
                    self._slots.release()
                    self._held_readings -= done.readings
                self._freed.set()

    async def _hold(self, readings: int) -> None:
        """Wait until `readings` more fit in the stream's room (a batch alone always fits)."""
        while self._held_readings and self._held_readings + readings > self._room:
            self._freed.clear()
            await self._freed.wait()
        self._held_readings += readings

    def _next_run(self, item: _Item) -> tuple[list[_Item], Any]:
        """`item` and the batches already waiting behind it that continue its numbering, within
        a group's readings; and what was taken off the queue but does not join (or None).

        One transaction for a stream's consecutive batches costs the service and PostgreSQL
        the round trips and commit of one (docs/ingest.md, "Joined batches"); nothing waits
        for a batch that is not there yet."""
        run = [item]
        readings = item.batch.reading_count
        while not self._queue.empty():
            following = self._queue.get_nowait()
            if (
                following is _STOP
                or not follows(following.batch, run[-1].batch)
                or readings + following.batch.reading_count > GROUP_READINGS
            ):
                return run, following
            run.append(following)
            readings += following.batch.reading_count
        return run, None

    async def _commit(self, run: list[_Item]) -> None:
        """Commit `run` in one transaction; when the database refuses it, batch by batch, so a
        batch it refuses fails alone and the ones before it are stored, as they would have been."""
        app = self._app
        first = run[0]
        batch = first.batch if len(run) == 1 else joined([i.batch for i in run])

        async def reprepare() -> PreparedBatch:
            again = [await app.preparer.upload(i.request, checked=True) for i in run]
            return again[0] if len(again) == 1 else joined(again)

        with trace.use_span(first.span, end_on_exit=False):
            try:
                commit = await app.commit(batch, reprepare)
            except asyncpg.PostgresError as refused:
                if len(run) == 1:
                    _end_spans(run, refused)
                    raise
                log.warning(
                    "event=joined_batches_refused device=%s batches=%d (committing them one by one)",
                    batch.device_id,
                    len(run),
                )
                for index, item in enumerate(run):
                    try:
                        await self._commit([item])
                    except BaseException as exc:
                        _end_spans(run[index + 1 :], exc)
                        raise
                return
            except BaseException as exc:
                _end_spans(run, exc)
                raise
        for item in run:
            end_batch_span(item.span, commit, joined=len(run))
        self.tally.add(commit)
        now = time.perf_counter()
        app.metrics.record_batch(
            "UploadReadings",
            commit.accepted,
            len(commit.rejected),
            commit.duplicates,
            *(now - item.started for item in run),
        )

    async def _response(self) -> ingest_pb2.UploadReadingsResponse:
        tally = self.tally
        mark = tally.mark
        if mark is None:  # an empty stream: report the device's mark as it is
            mark, _ = await self._app.read_mark(self._owner.device_id)
        return ingest_pb2.UploadReadingsResponse(
            committed_sequence=mark,
            accepted_count=tally.accepted,
            duplicate_count=tally.duplicates,
            rejected_count=tally.rejected_count,
            rejected=[rejected_reading(r) for r in tally.rejected],
        )


def rejected_reading(rejection: Rejection) -> ingest_pb2.RejectedReading:
    return ingest_pb2.RejectedReading(
        sequence=rejection.sequence, index=rejection.index, field=rejection.field, reason=rejection.reason
    )
