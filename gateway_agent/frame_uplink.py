"""The frame uplink: spooled camera frames to the ingest service, exactly once, beside the readings.

The readings' protocol (gateway_agent/uplink.py) on the frames' own numbers
and their own stream, so a slow picture never holds up readings: ask
`GetFrameUploadOffset`, forget what it covers, stream batches after it with
`UploadFrames`, and forget what each stream's response acknowledges. A
batch holds at most `MAX_BATCH_FRAMES` frames and `MAX_BATCH_BYTES` of them
(at least one frame), inside the service's limits; a stream ends after
`stream_max_batches` or `stream_max_duration`, like the readings'.

A stream that ends with INVALID_ARGUMENT after refusing frames (an image the
service will not take) has committed the rest and moved the mark past them:
the refusal is logged with its fields and the uplink resumes from the
offset, so a refused frame is never sent again. A refusal of the device
itself (disabled, deleted, token rotated) waits on the readings uplink's
slower schedule; that uplink logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry import trace
from sensormesh.v1.ingest_pb2 import (
    FrameThinningReport,
    GetFrameUploadOffsetRequest,
    UploadFramesRequest,
)
from sensormesh.v1.ingest_pb2_grpc import IngestServiceStub

from gateway_agent.backoff import Backoff
from gateway_agent.frame_buffer import FrameBuffer
from gateway_agent.frame_spool import FramesThinned
from gateway_agent.refusal import is_refusal
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink_settings import UplinkSettings

log = logging.getLogger(__name__)

MAX_BATCH_FRAMES = 16
"""The ingest service's default batch limit (`ingest_max_batch_frames`)."""
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Encoded frames per batch: with one frame of up to 4 MiB past it, a batch stays under 8 MiB."""


def thinning_report(thinned: FramesThinned) -> FrameThinningReport:
    report = FrameThinningReport(camera=thinned.camera, count=thinned.count)
    report.first_capture_time.FromNanoseconds(thinned.first_capture_time_ns)
    report.last_capture_time.FromNanoseconds(thinned.last_capture_time_ns)
    return report


class FrameUplink:
    """Uploads `frames` as `device_id`; `await run()` until `stop()`."""

    def __init__(
        self,
        settings: UplinkSettings,
        device_id: str,
        token: TokenSource,
        frames: FrameBuffer,
        channel: grpc.aio.Channel,
        tracer: trace.Tracer,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self._token = token
        self._frames = frames
        self._stub = IngestServiceStub(channel)
        self._tracer = tracer
        self._backoff = Backoff(
            settings.backoff_initial.total_seconds(), settings.backoff_max.total_seconds()
        )
        self._refused = Backoff(
            settings.refused_backoff_initial.total_seconds(), settings.refused_backoff_max.total_seconds()
        )
        self.committed: int | None = None
        self._stopping = asyncio.Event()
        self._send_now = asyncio.Event()
        self._acked = asyncio.Event()

    def _metadata(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self._token.token}"),)

    def stop(self) -> None:
        self._stopping.set()

    def send_now(self) -> None:
        """Send what is spooled without waiting for `batch_max_age` (the `capture` command)."""
        self._send_now.set()

    async def wait_acknowledged(self, sequence: int) -> None:
        """Return once the server has acknowledged frames through `sequence` (bound it with a timeout)."""
        while self.committed is None or self.committed < sequence:
            self._acked.clear()
            await self._acked.wait()

    async def run(self) -> None:
        while not self._stopping.is_set():
            delay = 0.0
            try:
                committed = await self._resume()
                while True:
                    committed = await self._stream(committed)
                    if self._stopping.is_set() and self._frames.last_sequence <= committed:
                        return  # stopped, and everything spooled is acknowledged
            except grpc.aio.AioRpcError as error:
                delay = self._on_error(error)
            except (OSError, sqlite3.Error):
                log.exception("event=frame_upload_failed device_id=%s reason=spool_error", self.device_id)
                delay = self._backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            self._token.reload()

    def _on_error(self, error: grpc.aio.AioRpcError) -> float:
        """Log a failed call; returns how long to wait before resuming."""
        code = error.code()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            fields = "; ".join(f"{field}: {why}" for field, why in _violations(error)) or error.details()
            log.warning("event=frames_refused device_id=%s fields=%r", self.device_id, fields)
            return 0.0  # the service committed the rest and moved the mark past the refused frames
        if is_refusal(code):
            return self._refused.next_delay()
        delay = self._backoff.next_delay()
        log.warning(
            "event=frame_upload_failed device_id=%s code=%s detail=%r retry_in_s=%.1f",
            self.device_id, code.name, error.details(), delay,
        )  # fmt: skip
        return delay

    async def _resume(self) -> int:
        response = await self._stub.GetFrameUploadOffset(
            GetFrameUploadOffsetRequest(device_id=self.device_id),
            metadata=self._metadata(),
            timeout=self.settings.ack_timeout.total_seconds(),
        )
        committed = int(response.committed_sequence)
        await self._frames.bind_sequence(committed)
        await self._acknowledged(committed)
        return committed

    async def _acknowledged(self, committed: int) -> None:
        await self._frames.forget_through(committed)
        self.committed = committed
        self._acked.set()

    async def _wait_for_frames(self, after: int) -> None:
        while self._frames.last_sequence <= after and not self._stopping.is_set():
            self._send_now.clear()
            waits = {
                asyncio.ensure_future(self._frames.wait_for_data(after)),
                asyncio.ensure_future(self._stopping.wait()),
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    async def _stream(self, committed: int) -> int:
        """One bounded upload stream after `committed`; returns the server's new frame mark."""
        await self._wait_for_frames(committed)
        if self._frames.last_sequence <= committed:
            return committed  # stopping with nothing left to send
        s = self.settings
        timeout = (s.stream_max_duration + s.ack_timeout).total_seconds()
        with self._tracer.start_as_current_span("frame upload stream"):
            response = await self._stub.UploadFrames(
                self._batches(committed), metadata=self._metadata(), timeout=timeout
            )
        mark = int(response.committed_sequence)
        await self._acknowledged(mark)
        self._backoff.reset()
        self._refused.reset()
        log.debug(
            "event=frames_acknowledged device_id=%s committed_sequence=%d accepted=%d duplicates=%d",
            self.device_id, mark, response.accepted_count, response.duplicate_count,
        )  # fmt: skip
        return mark

    async def _batches(self, after: int) -> AsyncIterator[UploadFramesRequest]:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.stream_max_duration.total_seconds()
        sent, batches = after, 0
        reported: set[int] = set()
        while batches < s.stream_max_batches and loop.time() < deadline:
            if self._frames.last_sequence <= sent and not (
                self._stopping.is_set() or self._send_now.is_set()
            ):
                with contextlib.suppress(TimeoutError):  # wait a little for the next frame
                    async with asyncio.timeout(min(s.batch_max_age.total_seconds(), deadline - loop.time())):
                        await self._frames.wait_for_data(sent)
            spooled = await self._frames.read(sent, MAX_BATCH_FRAMES, MAX_BATCH_BYTES)
            if not spooled:
                return
            thinned = [t for t in await self._frames.pending_thinning() if not reported.intersection(t.ids)]
            request = UploadFramesRequest(
                device_id=self.device_id, first_sequence=sent + 1, last_sequence=spooled[-1].sequence
            )
            for item in spooled:
                request.frames.add().MergeFromString(item.payload)
                request.frames[-1].sequence = item.sequence
            request.thinned.extend(thinning_report(t) for t in thinned)
            if thinned:
                await self._frames.mark_thinning_sent(thinned, request.last_sequence)
                reported.update(i for t in thinned for i in t.ids)
            yield request
            sent = request.last_sequence
            batches += 1
            if self._stopping.is_set():
                return


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    found: list[tuple[str, str]] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found
