"""A test double of the IngestService: the contract's offsets and acknowledgements, in memory.

It follows proto/sensormesh/v1/ingest.proto as the agent relies on it: bearer
token per device, batches committed as they arrive, the device's mark moved to
each batch's last_sequence, numbers at or below the mark dropped as duplicates,
the single response carrying the committed sequence. Faults are injected
through `fault`, called after each committed batch. It stands in until the
real ingest service is on main; run as a module it serves in its own process
(`python -m tests.gateway_agent.ingest_double --port 0 --device-id d --token t`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc
from sensormesh.v1.reading_pb2 import Reading

BATCH_LIMIT = 10_000


@dataclass
class IngestDouble(ingest_pb2_grpc.IngestServiceServicer):
    device_id: str
    token: str
    keep_readings: bool = True
    committed: int = 0
    stored: dict[int, Reading] = field(default_factory=dict)
    stored_count: int = 0
    stored_twice: int = 0
    duplicates: int = 0
    batches: int = 0
    streams: int = 0
    thinned: list[ingest_pb2.ThinningReport] = field(default_factory=list)
    statuses: list[ingest_pb2.InputStatus] = field(default_factory=list)
    # Called after each committed batch with (servicer, batch, context); may abort the stream.
    fault: Callable[[IngestDouble, ingest_pb2.UploadReadingsRequest, Any], Awaitable[None]] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def _authorize(self, context: grpc.aio.ServicerContext, device_id: str) -> None:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid device token")
        if device_id != self.device_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"token does not belong to {device_id!r}")

    async def _check(
        self, batch: ingest_pb2.UploadReadingsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        problems = []
        if not 1 <= batch.first_sequence <= batch.last_sequence:
            problems.append("first_sequence/last_sequence out of order")
        if len(batch.readings) > BATCH_LIMIT:
            problems.append("too many readings")
        sequences = [r.sequence for r in batch.readings]
        if sequences != sorted(set(sequences)) or (
            sequences and not batch.first_sequence <= sequences[0] <= sequences[-1] <= batch.last_sequence
        ):
            problems.append("readings not strictly increasing within [first_sequence, last_sequence]")
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))

    def _commit(self, batch: ingest_pb2.UploadReadingsRequest) -> tuple[int, int]:
        accepted = duplicates = 0
        for item in batch.readings:
            if item.sequence <= self.committed:
                duplicates += 1
                continue
            if item.sequence in self.stored:
                self.stored_twice += 1
            if self.keep_readings:
                self.stored[item.sequence] = item.reading
            accepted += 1
        self.stored_count += accepted
        self.duplicates += duplicates
        self.committed = max(self.committed, batch.last_sequence)
        self.thinned.extend(batch.thinned)
        self.statuses.extend(batch.input_statuses)
        self.batches += 1
        self.changed.set()
        return accepted, duplicates

    async def UploadReadings(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadReadingsRequest],
        context: grpc.aio.ServicerContext,
    ) -> ingest_pb2.UploadReadingsResponse:
        self.streams += 1
        accepted = duplicates = 0
        async for batch in request_iterator:
            await self._authorize(context, batch.device_id)
            await self._check(batch, context)
            a, d = self._commit(batch)
            accepted, duplicates = accepted + a, duplicates + d
            if self.fault is not None:
                await self.fault(self, batch, context)
        return ingest_pb2.UploadReadingsResponse(
            committed_sequence=self.committed, accepted_count=accepted, duplicate_count=duplicates
        )

    async def GetUploadOffset(
        self, request: ingest_pb2.GetUploadOffsetRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.GetUploadOffsetResponse:
        await self._authorize(context, request.device_id)
        return ingest_pb2.GetUploadOffsetResponse(
            device_id=request.device_id, committed_sequence=self.committed
        )


async def serve(
    servicer: IngestDouble, port: int = 0, interceptors: list[Any] | None = None
) -> tuple[grpc.aio.Server, int]:
    """Serve `servicer` on 127.0.0.1:`port` (0: a free one); returns the server and its port."""
    server = grpc.aio.server(interceptors=interceptors)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    servicer = IngestDouble(args.device_id, args.token, keep_readings=False)
    server, port = await serve(servicer, args.port)
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_main())
