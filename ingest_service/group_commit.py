"""Group commit: batches of different devices that wait at the same time
share one transaction.

Each stream commits its batches one at a time, in order (upload.py; the
consecutive ones that waited behind each other joined into one), and at
most `concurrency` transactions run at once. A batch that arrives while they
all run waits; when one ends, everything that waited in the meantime goes into
the next transaction together, one batch per device, up to `max_batches`
batches and `max_readings` readings. Nothing waits for a timer: alone, a batch
commits at once; under load, groups grow with the load, and a group costs the
round trips of one batch (`BatchWriter.commit_group`).

A group is all or nothing for the database, not for its batches: a batch
whose device is gone, disabled or registered again is left out with its own
error by the writer. When the database refuses the group's transaction, its
batches are committed again one by one, so one batch that the database
refuses fails alone, as it would have without grouping; when the database is
away (a lost connection, a timeout), every batch of the group gets that error
at once, and its stream's device resends from its mark.

Exactly-once is unchanged: each batch is still cut at its device's mark,
locked in the transaction that moves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import Context
from dataclasses import dataclass

from opentelemetry import trace

from ingest_service.batch import PreparedBatch
from ingest_service.writer import BatchWriter, Commit
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS

log = logging.getLogger(__name__)

# Most readings in one group (a batch larger than this still commits, alone):
# the group's COPY buffers stay a few megabytes.
GROUP_READINGS = 50_000


@dataclass(slots=True)
class _Waiting:
    """A batch waiting for its transaction, and where its caller waits for the outcome."""

    batch: PreparedBatch
    outcome: asyncio.Future[Commit]
    span: trace.SpanContext  # the caller's span, which the group's links to


class GroupCommitter:
    """Forms the transactions of one process's batches; shared by every stream."""

    def __init__(
        self,
        writer: BatchWriter,
        tracer: trace.Tracer,
        track: Callable[[asyncio.Task[object]], None],
        *,
        concurrency: int,
        max_batches: int,
        max_readings: int = GROUP_READINGS,
    ) -> None:
        """`track` keeps a group's task until it ends (the service's close waits for it)."""
        self._writer = writer
        self._tracer = tracer
        self._track = track
        self._concurrency = concurrency
        self._max_batches = max_batches
        self._max_readings = max_readings
        self._waiting: list[_Waiting] = []
        self._running = 0
        self.groups = 0  # transactions run, for tests and the benchmark
        self.grouped = 0  # batches committed in them (a stream's joined batches each count)

    @property
    def running(self) -> int:
        """Transactions running now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Batches waiting for a transaction."""
        return len(self._waiting)

    async def commit(self, batch: PreparedBatch) -> Commit:
        """Commit `batch` exactly once, in the next transaction that has room.

        Raises NotFound, PermissionDenied or StaleCatalog (the batch was left
        out), or the database's error. Cancelling the caller does not take
        back a batch already in a transaction.
        """
        outcome: asyncio.Future[Commit] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(batch, outcome, trace.get_current_span().get_span_context()))
        self._start()
        return await outcome

    def _start(self) -> None:
        """Start transactions for the waiting batches while there is room."""
        while self._running < self._concurrency:
            group = self._take()
            if not group:
                return
            self._running += 1
            # A context of its own: the group's span is parented explicitly, not
            # by whichever caller or earlier group happened to start it.
            task = asyncio.create_task(self._run(group), name="ingest-commit-group", context=Context())
            self._track(task)

    def _take(self) -> list[_Waiting]:
        """The next group: waiting batches in arrival order, one per device,
        within the limits; the first always fits."""
        group: list[_Waiting] = []
        devices: set[str] = set()
        readings = 0
        left: list[_Waiting] = []
        for waiting in self._waiting:
            batch = waiting.batch
            if waiting.outcome.done():  # its caller went away before it was taken
                continue
            fits = len(group) < self._max_batches and (
                not group or readings + batch.reading_count <= self._max_readings
            )
            if fits and batch.device_id not in devices:
                group.append(waiting)
                devices.add(batch.device_id)
                readings += batch.reading_count
            else:
                left.append(waiting)
        self._waiting = left
        return group

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            # A child of the first batch's span, with a link to every batch's (the
            # trace of any batch of the group leads to the transaction).
            parent = trace.set_span_in_context(trace.NonRecordingSpan(group[0].span))
            links = [trace.Link(w.span) for w in group if w.span.is_valid]
            with self._tracer.start_as_current_span(
                "commit group",
                context=parent,
                links=links,
                attributes={"sensormesh.group.batches": len(group)},
            ):
                await self._commit(group)
        finally:
            for waiting in group:  # settled unless this task was cancelled
                if not waiting.outcome.done():
                    waiting.outcome.cancel()
            self._running -= 1
            self._start()

    async def _commit(self, group: list[_Waiting]) -> None:
        """One transaction for `group`; after a failure, one for each of its batches."""
        try:
            outcomes = await self._writer.commit_group([w.batch for w in group])
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, RETRYABLE_DATABASE_ERRORS):
                for waiting in group:  # alone, or the database is away for every batch alike
                    _settle(waiting, exc)
                return
            log.warning(
                "event=commit_group_failed batches=%d error=%r (committing them one by one)", len(group), exc
            )
            for waiting in group:
                await self._commit([waiting])
            return
        self.groups += 1
        self.grouped += sum(w.batch.joined for w in group)
        for waiting, outcome in zip(group, outcomes, strict=True):
            _settle(waiting, outcome)


def _settle(waiting: _Waiting, outcome: Commit | BaseException) -> None:
    """Hand the outcome to the batch's caller, unless it went away."""
    if waiting.outcome.done():
        return
    if isinstance(outcome, BaseException):
        waiting.outcome.set_exception(outcome)
    else:
        waiting.outcome.set_result(outcome)
