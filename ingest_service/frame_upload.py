"""One UploadFrames stream: batches checked, paced and committed in the order they arrive.

Frames are few and large (a snapshot every few seconds, tens of kilobytes
each), so a stream is one loop rather than the readings' two-task pipeline:
receive a batch, check it, wait for the device's frame rate if it has run
ahead (frame_pacing.py), commit it, answer at the end. Batches committed
before a failure stay committed: the device resumes from
GetFrameUploadOffset.

A batch with refused frames (ingest_service/frame_checks.py) commits the
others and moves the mark past it, then ends the stream with
INVALID_ARGUMENT naming each refused frame's field, with the committed
sequence in ErrorInfo metadata: a device that resumes after it never sends
those frames again, and what was valid is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sensormesh.v1 import ingest_pb2

from ingest_service.app import IngestApp
from ingest_service.frame_batch import prepare
from ingest_service.frame_writer import FrameCommit
from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import FieldViolation, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

# Refused frames' violations named in one error (each frame has one or two).
MAX_REPORTED_VIOLATIONS = 100


@dataclass(slots=True)
class FrameTally:
    """What a stream achieved."""

    mark: int | None = None
    accepted: int = 0
    duplicates: int = 0


class FrameUploadStream:
    """Runs one UploadFrames call for the device `owner` authenticated as."""

    def __init__(self, app: IngestApp, owner: Principal) -> None:
        self._app = app
        self._owner = owner
        self._device_id: str | None = None
        self.tally = FrameTally()

    async def run(
        self, requests: AsyncIterator[ingest_pb2.UploadFramesRequest]
    ) -> ingest_pb2.UploadFramesResponse:
        iterator = aiter(requests)
        while (request := await self._receive(iterator)) is not None:
            commit = await self._batch(request)
            if commit.refused:
                raise _refusal(commit)
        mark = self.tally.mark
        if mark is None:  # an empty stream: report the device's frame mark as it is
            mark, _ = await self._app.read_frame_mark(self._owner.device_id)
        return ingest_pb2.UploadFramesResponse(
            committed_sequence=mark, accepted_count=self.tally.accepted, duplicate_count=self.tally.duplicates
        )

    async def _receive(
        self, iterator: AsyncIterator[ingest_pb2.UploadFramesRequest]
    ) -> ingest_pb2.UploadFramesRequest | None:
        """The next batch; None at the stream's end; Unavailable when the service stops meanwhile."""
        receive = asyncio.ensure_future(anext(iterator))
        stopping = asyncio.ensure_future(self._app.stopping.wait())
        try:
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if receive.done():
                try:
                    return receive.result()
                except StopAsyncIteration:
                    return None
            raise Unavailable(
                f"the ingest service is shutting down; frames committed through {self.tally.mark or 'nothing new'}: "
                "resume from GetFrameUploadOffset",
                reason="SHUTTING_DOWN",
            )
        finally:
            stopping.cancel()
            if not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # the call is over
                    await receive

    async def _batch(self, request: ingest_pb2.UploadFramesRequest) -> FrameCommit:
        app = self._app
        if self._device_id is not None and request.device_id != self._device_id:
            raise InvalidArgument(
                "device_id changed within the stream",
                [FieldViolation("device_id", f"must be {self._device_id!r} in every batch of a stream")],
            )
        app.auth.authorize(self._owner, request.device_id)
        self._device_id = request.device_id
        started = time.perf_counter()
        with app.tracer.start_as_current_span(
            "ingest frame batch",
            attributes={
                "sensormesh.device_id": request.device_id,
                "sensormesh.batch.frames": len(request.frames),
                "sensormesh.batch.first_sequence": request.first_sequence,
                "sensormesh.batch.last_sequence": request.last_sequence,
            },
        ) as span:
            batch = prepare(request, app.settings, datetime.now(UTC))
            await self._pace(request.device_id, len(batch.frames))
            commit = await app.commit_frames(batch)
            span.set_attribute("sensormesh.batch.committed_sequence", commit.mark)
            span.set_attribute("sensormesh.batch.refused", len(commit.refused))
        self.tally.mark = commit.mark
        self.tally.accepted += commit.accepted
        self.tally.duplicates += commit.duplicates
        app.metrics.batch_duration.record(time.perf_counter() - started, {"rpc": "UploadFrames"})
        return commit

    async def _pace(self, device_id: str, frames: int) -> None:
        """Wait until the device may store `frames` more (the per-device frame rate)."""
        delay = self._app.frame_pacer.take(device_id, frames)
        if delay <= 0:
            return
        self._app.metrics.frames_paced.add(delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._app.stopping.wait(), delay)


def _refusal(commit: FrameCommit) -> InvalidArgument:
    violations = [v for refused in commit.refused for v in refused.violations][:MAX_REPORTED_VIOLATIONS]
    sequences = ", ".join(str(r.sequence) for r in commit.refused[:10])
    return InvalidArgument(
        f"{len(commit.refused)} frame(s) refused (sequence {sequences}): "
        + "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
        + f". The batch's other frames are stored; frames are committed through {commit.mark}: "
        "resume from GetFrameUploadOffset",
        violations,
        metadata={"committed_sequence": str(commit.mark)},
    )
