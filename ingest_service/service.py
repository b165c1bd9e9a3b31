"""IngestService: check, hand over to the domain code, answer.

The access interceptor has authenticated the device (the contract's access
rule: a device token) before a handler runs; handlers check that it writes
only as itself.

Errors are raised as `sensormesh_core.errors` exceptions; the server's
ErrorMappingInterceptor turns them into status codes with details.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from opentelemetry import trace
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.app import IngestApp
from ingest_service.frame_upload import FrameUploadStream
from ingest_service.upload import (
    MAX_REPORTED_REJECTIONS,
    UploadStream,
    batch_span,
    end_batch_span,
    rejected_reading,
)
from sensormesh_core import validation
from sensormesh_core.access.principal import current_caller
from sensormesh_core.errors import InvalidArgument


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """The device-facing write path (proto/sensormesh/v1/ingest.proto)."""

    def __init__(self, app: IngestApp) -> None:
        self._app = app

    async def UploadReadings(  # noqa: N802 - named by the contract
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadReadingsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ingest_pb2.UploadReadingsResponse:
        owner = current_caller()
        self._app.metrics.active_streams.add(1)
        try:
            return await UploadStream(self._app, owner).run(request_iterator)
        finally:
            self._app.metrics.active_streams.add(-1)

    async def GetUploadOffset(  # noqa: N802 - named by the contract
        self, request: ingest_pb2.GetUploadOffsetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.GetUploadOffsetResponse:
        owner = current_caller()
        validation.validate(request)
        self._app.auth.authorize(owner, request.device_id)
        mark, moved = await self._app.read_mark(request.device_id)
        response = ingest_pb2.GetUploadOffsetResponse(
            device_id=request.device_id, committed_sequence=mark, columns_accepted=True
        )
        if moved is not None:
            response.update_time.CopyFrom(_timestamp(moved))
        return response

    async def WriteReadings(  # noqa: N802 - named by the contract
        self, request: ingest_pb2.WriteReadingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.WriteReadingsResponse:
        app = self._app
        owner = current_caller()
        head = app.preparer.write_head_violations(request)
        if head:
            raise InvalidArgument("invalid request: " + ", ".join(v.field for v in head), head)
        app.auth.authorize(owner, request.device_id)
        started = time.perf_counter()
        count = len(request.readings)
        first = request.first_sequence
        span = batch_span(
            app, "WriteReadings", request.device_id, count, first, first + count - 1 if first else 0
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                batch = await app.preparer.write(request, checked=True)
                commit = await app.commit(batch, lambda: app.preparer.write(request, checked=True))
        except BaseException as exc:
            span.record_exception(exc)
            span.end()
            raise
        end_batch_span(span, commit)
        app.metrics.record_batch(
            "WriteReadings",
            commit.accepted,
            len(commit.rejected),
            commit.duplicates,
            time.perf_counter() - started,
        )
        return ingest_pb2.WriteReadingsResponse(
            committed_sequence=commit.mark,
            accepted_count=commit.accepted,
            duplicate_count=commit.duplicates,
            rejected_count=len(commit.rejected),
            rejected=[rejected_reading(r) for r in commit.rejected[:MAX_REPORTED_REJECTIONS]],
        )

    async def UploadFrames(  # noqa: N802 - named by the contract
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadFramesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ingest_pb2.UploadFramesResponse:
        owner = current_caller()
        self._app.metrics.active_streams.add(1, {"rpc": "UploadFrames"})
        try:
            return await FrameUploadStream(self._app, owner).run(request_iterator)
        finally:
            self._app.metrics.active_streams.add(-1, {"rpc": "UploadFrames"})

    async def GetFrameUploadOffset(  # noqa: N802 - named by the contract
        self, request: ingest_pb2.GetFrameUploadOffsetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.GetFrameUploadOffsetResponse:
        owner = current_caller()
        validation.validate(request)
        self._app.auth.authorize(owner, request.device_id)
        mark, moved = await self._app.read_frame_mark(request.device_id)
        response = ingest_pb2.GetFrameUploadOffsetResponse(
            device_id=request.device_id, committed_sequence=mark
        )
        if moved is not None:
            response.update_time.CopyFrom(_timestamp(moved))
        return response


def _timestamp(value: Any) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
