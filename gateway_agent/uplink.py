"""The uplink: buffered readings to the ingest service, exactly once, whatever the network does.

Protocol (proto/sensormesh/v1/ingest.proto): on start and after every failure
ask `GetUploadOffset` for the device's committed sequence, forget what it
covers, and stream batches after it with `UploadReadings`. A client stream
answers once, at its end, so each stream is bounded (`stream_max_batches`,
`stream_max_duration`): its response, `committed_sequence`, is the
acknowledgement that lets the buffer forget, and it arrives at least every
`stream_max_duration`. Batches are flushed when full (`batch_max_readings`)
or when the oldest unsent reading has waited `batch_max_age`. Streams never
overlap: if one failed after a later one had committed, the mark would skip
readings. Failures back off exponentially with jitter and resume from the
server's offset; anything sent but not acknowledged is simply sent again
(the server drops numbers at or below its mark).

A refusal of the device itself (PERMISSION_DENIED: disabled; UNAUTHENTICATED:
deleted or its token rotated; NOT_FOUND: deleted) is not an outage: the
uplink keeps every reading, logs the server's reason and the fix once
(gateway_agent/refusal.py), re-reads a token file before every retry
(gateway_agent/token_source.py) and asks again on the slower
`refused_backoff_*` schedule until the device is allowed again; then it
resumes from the server's offset like after any failure. `state` says which
of these the uplink is in, and the `sensormesh.agent.upload.refused` gauge
exports it.

`send_now()` (the `flush` command) cuts the waits: what the buffer has
committed goes out at once, and the stream ends once it is sent, so its
acknowledgement follows at once too.

Each stream is a span, each batch a child span, and the gRPC client
interceptor carries the trace into the ingest service.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from opentelemetry import metrics, trace
from sensormesh.v1.ingest_pb2 import GetUploadOffsetRequest, UploadReadingsRequest, UploadReadingsResponse
from sensormesh.v1.ingest_pb2_grpc import IngestServiceStub

from gateway_agent.backoff import Backoff
from gateway_agent.batches import build_batch
from gateway_agent.buffer import Buffer, Stored
from gateway_agent.refusal import Refusal, RefusalWatch, is_refusal
from gateway_agent.status import StatusBoard
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink_settings import UplinkSettings

# UplinkSettings lives in gateway_agent/uplink_settings.py; named here too, so whoever builds an
# uplink imports it and its settings from one place.
__all__ = ["Uplink", "UplinkSettings", "UplinkState"]

log = logging.getLogger(__name__)


class UplinkState(enum.StrEnum):
    """What the uplink is doing, for logs, metrics and tests."""

    CONNECTING = "connecting"  # before the first answer, or waiting to retry after a failure
    UPLOADING = "uploading"  # the server answered GetUploadOffset; streams are flowing
    REFUSED = "refused"  # the server refuses the device until an operator acts (see refusal.py)


@dataclass
class _StreamProgress:
    """What one stream has sent so far."""

    sent: int
    status_version: int
    batches: int = 0
    reported: set[int] = field(default_factory=set)


class Uplink:
    """Uploads `buffer` as `device_id`; `await run()` until cancelled."""

    def __init__(
        self,
        settings: UplinkSettings,
        device_id: str,
        token: str | TokenSource,
        buffer: Buffer,
        statuses: StatusBoard,
        channel: grpc.aio.Channel,
        tracer: trace.Tracer,
        meter: metrics.Meter,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self._token = token if isinstance(token, TokenSource) else TokenSource(token)
        self._metadata = self._bearer()
        self._buffer = buffer
        self._statuses = statuses
        self._stub = IngestServiceStub(channel)
        self._tracer = tracer
        self._uploaded = meter.create_counter(
            "sensormesh.agent.readings.uploaded", unit="{reading}", description="Readings acknowledged."
        )
        self._failures = meter.create_counter(
            "sensormesh.agent.upload.failures", unit="{failure}", description="Failed uploads by status code."
        )
        meter.create_observable_gauge(
            "sensormesh.agent.upload.refused",
            callbacks=[self._observe_refused],
            unit="1",
            description="1 while the server refuses this device (the code says why); readings stay buffered.",
        )
        self._refusals = RefusalWatch(device_id)
        self._backoff = Backoff(
            settings.backoff_initial.total_seconds(), settings.backoff_max.total_seconds()
        )
        self._refused_backoff = Backoff(
            settings.refused_backoff_initial.total_seconds(), settings.refused_backoff_max.total_seconds()
        )
        self._batch_limit = settings.batch_max_readings
        self._columnar = False  # until GetUploadOffset says the service stores columns
        self._acked_status_version = 0
        self.committed: int | None = None
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._send_now = asyncio.Event()
        self._send_through = 0
        self._acked = asyncio.Event()

    @property
    def state(self) -> UplinkState:
        if self._refusals.refused:
            return UplinkState.REFUSED
        return UplinkState.UPLOADING if self.connected.is_set() else UplinkState.CONNECTING

    @property
    def refusal(self) -> Refusal | None:
        """The server's answer while it refuses the device, else None."""
        return self._refusals.current

    def _bearer(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self._token.token}"),)

    def _observe_refused(self, _options: metrics.CallbackOptions) -> list[metrics.Observation]:
        refusal = self._refusals.current
        if refusal is None:
            return [metrics.Observation(0)]
        return [metrics.Observation(1, {"code": refusal.code.name})]

    def stop(self) -> None:
        """Send what the buffer holds without waiting for more data, in as many streams as that
        takes (each ack lets the buffer forget), then return from `run()`. What a cut-off stop
        leaves (the agent's `stop_timeout`, an unreachable server) is sent on the next start."""
        self._stopping.set()

    def send_now(self) -> None:
        """Send what the buffer has committed now, without waiting for `batch_max_age`, and end the
        stream once it is sent, so its acknowledgement follows at once (see `wait_acknowledged`)."""
        self._send_through = self._buffer.last_sequence if self._buffer.bound else 0
        self._send_now.set()

    async def wait_acknowledged(self, sequence: int) -> None:
        """Return once the server has acknowledged readings through `sequence` (bound it with a timeout)."""
        while self.committed is None or self.committed < sequence:
            self._acked.clear()
            await self._acked.wait()

    def _sent_what_was_asked(self, sent: int) -> bool:
        """Whether a `send_now()` is pending and `sent` covers it (which ends that request)."""
        if self._send_now.is_set() and sent >= self._send_through:
            self._send_now.clear()
            return True
        return False

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                committed = await self._resume()
                while not self._finished(committed):
                    committed = await self._stream(committed)
                return
            except grpc.aio.AioRpcError as error:
                await self._on_rpc_error(error)
            except sqlite3.Error:
                log.exception("event=upload_failed device_id=%s reason=buffer_error", self.device_id)
            self.connected.clear()
            if self._stopping.is_set():
                return
            await self._wait_to_retry()

    def _finished(self, committed: int) -> bool:
        """Whether a stopping uplink has had everything the buffer holds acknowledged. A stream
        that ends on its own limits (`stream_max_duration`, `stream_max_batches`) just as `stop()`
        arrives leaves readings behind: another stream follows for them (the agent bounds the
        whole with `stop_timeout`)."""
        return self._stopping.is_set() and self._buffer.last_sequence <= committed

    async def _wait_to_retry(self) -> None:
        """Back off (slowly while refused, unless a new token just arrived), then re-read the token."""
        if self._refusals.refused and not self._reload_token():
            delay = self._refused_backoff.next_delay()
            log.debug(
                "event=upload_retry device_id=%s after_seconds=%.2f refused=true", self.device_id, delay
            )
        else:
            delay = self._backoff.next_delay()
            log.info("event=upload_retry device_id=%s after_seconds=%.2f", self.device_id, delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        self._reload_token()

    def _reload_token(self) -> bool:
        """Re-read the token file; True when the token differs from the one in use. Compared with
        what this uplink sends, not taken from reload(): the command link shares the source."""
        self._token.reload()
        changed = self._metadata != self._bearer()
        if changed:
            self._metadata = self._bearer()
        return changed

    async def _on_rpc_error(self, error: grpc.aio.AioRpcError) -> None:
        code = error.code()
        self._failures.add(1, {"code": code.name})
        if is_refusal(code):
            if self._refusals.is_news(error):
                self._refusals.refuse(
                    error,
                    buffered=(await self._buffer.stats()).pending,
                    retry_s=self.settings.refused_backoff_max.total_seconds(),
                    new_token=self._token.how_to_replace(),
                )
            return
        if code == grpc.StatusCode.INVALID_ARGUMENT and self._batch_limit > 1:
            self._batch_limit = max(1, self._batch_limit // 2)  # e.g. a server with a lower batch limit
        log.warning(
            "event=upload_failed device_id=%s code=%s detail=%r batch_limit=%d",
            self.device_id, code.name, error.details(), self._batch_limit,
        )  # fmt: skip

    async def _resume(self) -> int:
        """Ask the server where the device stands; bind and trim the buffer to it."""
        response = await self._stub.GetUploadOffset(
            GetUploadOffsetRequest(device_id=self.device_id),
            metadata=self._metadata,
            timeout=self.settings.ack_timeout.total_seconds(),
        )
        committed = int(response.committed_sequence)
        # Columns only to a service that stores them: an older one would drop them unseen.
        self._columnar = self.settings.columnar and response.columns_accepted
        await self._buffer.bind_sequence(committed)
        await self._acknowledged(committed)
        self.connected.set()
        # While refused, a token lookup the server still has cached may let this call through
        # although writes are refused: only an acknowledged stream ends the refusal.
        level = logging.DEBUG if self._refusals.refused else logging.INFO
        log.log(
            level,
            "event=upload_resumed device_id=%s committed_sequence=%d form=%s",
            self.device_id, committed, "columns" if self._columnar else "rows",
        )  # fmt: skip
        return committed

    async def _acknowledged(self, committed: int) -> None:
        # `committed` changes only once the buffer has forgotten through it (and the thinning
        # reports the mark covers), so whoever reads it sees a buffer that agrees.
        previous = self.committed
        await self._buffer.forget_through(committed)
        self.committed = committed
        self._acked.set()
        if previous is not None and committed > previous:
            self._uploaded.add(committed - previous)

    def _has_work(self, after: int) -> bool:
        version, _ = self._statuses.changed_since(self._acked_status_version)
        statuses_pending = version > self._acked_status_version and after >= 1
        return self._buffer.last_sequence > after or statuses_pending

    async def _wait_for_work(self, after: int) -> None:
        period = self.settings.batch_max_age.total_seconds()
        while not self._has_work(after) and not self._stopping.is_set():
            self._sent_what_was_asked(after)  # nothing to send: a send_now() has nothing left to do
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):  # statuses change without an event: look again
                    await self._data_or_cut()

    async def _next_rows(self, after: int, stream_deadline: float) -> list[Stored]:
        """A full batch if the backlog has one, else what arrives within `batch_max_age`."""
        limit = self._batch_limit
        rows = await self._buffer.read(after, limit)
        if len(rows) == limit or self._cut():
            return rows
        loop = asyncio.get_running_loop()
        end = min(loop.time() + self.settings.batch_max_age.total_seconds(), stream_deadline)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                while self._buffer.last_sequence - after < limit and not self._cut():
                    await self._data_or_cut()
        if self._buffer.last_sequence > (rows[-1].sequence if rows else after):
            rows = await self._buffer.read(after, limit)
        return rows

    def _cut(self) -> bool:
        """Whether to send what there is now: `send_now()` or `stop()` was called."""
        return self._send_now.is_set() or self._stopping.is_set()

    async def _data_or_cut(self) -> None:
        """Wait for the buffer's next commit, `send_now()` or `stop()`."""
        waits = {
            asyncio.ensure_future(self._buffer.wait_for_data(self._buffer.last_sequence)),
            asyncio.ensure_future(self._send_now.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _stream(self, committed: int) -> int:
        """One bounded upload stream after `committed`; returns the server's new mark."""
        await self._wait_for_work(committed)
        s = self.settings
        progress = _StreamProgress(sent=committed, status_version=self._acked_status_version)
        timeout = (s.stream_max_duration + s.ack_timeout).total_seconds()
        with self._tracer.start_as_current_span("upload stream") as span:
            # A request iterator, not call.write(): the tracing interceptor awaits the call's
            # status before handing the call back, which only an iterator-fed call survives.
            call = self._stub.UploadReadings(
                self._batches(progress), metadata=self._metadata, timeout=timeout
            )
            response: UploadReadingsResponse = await call
            span.set_attribute("sensormesh.batches", progress.batches)
            span.set_attribute("sensormesh.committed_sequence", response.committed_sequence)
        self._acked_status_version = progress.status_version
        self._log_response(response, progress.sent)
        await self._acknowledged(int(response.committed_sequence))
        self._backoff.reset()
        if self._refusals.refused:
            self._refused_backoff.reset()
            self._refusals.allow(buffered=(await self._buffer.stats()).pending)
        return int(response.committed_sequence)

    async def _batches(self, progress: _StreamProgress) -> AsyncIterator[UploadReadingsRequest]:
        """The batches of one stream: until it has enough batches, time, or nothing to send."""
        s = self.settings
        loop = asyncio.get_running_loop()
        stream_deadline = loop.time() + s.stream_max_duration.total_seconds()
        while progress.batches < s.stream_max_batches and loop.time() < stream_deadline:
            rows = await self._next_rows(progress.sent, stream_deadline)
            thinned = [
                t for t in await self._buffer.pending_thinning() if not progress.reported.intersection(t.ids)
            ]
            new_version, statuses = self._statuses.changed_since(progress.status_version)
            if not rows and (progress.sent < 1 or not (statuses or thinned)):
                self._sent_what_was_asked(progress.sent)
                return  # nothing to send (or nothing to anchor a status-only batch to yet)
            request = build_batch(
                self.device_id, progress.sent, rows, thinned, statuses, columnar=self._columnar
            )
            attributes: dict[str, str | int] = {
                "sensormesh.device_id": self.device_id,
                "sensormesh.first_sequence": request.first_sequence,
                "sensormesh.last_sequence": request.last_sequence,
                "sensormesh.readings": len(rows),
            }
            # Not made current: a context attached here would be detached across the yield, in
            # another context when the call fails mid-stream (OpenTelemetry logs an error then).
            span = self._tracer.start_span("upload batch", attributes=attributes)
            try:
                if thinned:
                    await self._buffer.mark_thinning_sent(thinned, request.last_sequence)
                yield request
            finally:
                span.end()
            progress.reported.update(i for t in thinned for i in t.ids)
            progress.sent = request.last_sequence
            progress.status_version = new_version
            progress.batches += 1
            if self._sent_what_was_asked(progress.sent):
                return  # end the stream: its response acknowledges what send_now() asked for

    def _log_response(self, response: UploadReadingsResponse, sent: int) -> None:
        if response.rejected_count:
            for rejected in response.rejected:
                log.warning(
                    "event=reading_rejected device_id=%s sequence=%d field=%s reason=%r",
                    self.device_id, rejected.sequence, rejected.field, rejected.reason,
                )  # fmt: skip
        if response.committed_sequence < sent:
            log.warning(
                "event=upload_partially_committed device_id=%s sent_through=%d committed_sequence=%d",
                self.device_id, sent, response.committed_sequence,
            )  # fmt: skip
        log.debug(
            "event=upload_acknowledged device_id=%s committed_sequence=%d accepted=%d duplicates=%d rejected=%d",
            self.device_id, response.committed_sequence, response.accepted_count,
            response.duplicate_count, response.rejected_count,
        )  # fmt: skip
