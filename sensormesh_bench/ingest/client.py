"""A benchmark client process: simulated gateways streaming through real gRPC.

Runs in its own process, as gateways do in a deployment, so its CPU is not
the server's. Batches arrive already serialized (a gateway's CPU is not the
server's either, and serializing is not what is measured); each device
opens one UploadReadings stream and sends all its batches on it.

Protocol over the pipe: receive a `ClientJob`, send "ready", wait for "go",
stream, send a `ClientResult`.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc
from sensormesh.v1 import ingest_pb2

UPLOAD_METHOD = "/sensormesh.v1.IngestService/UploadReadings"


@dataclass(frozen=True)
class ClientJob:
    address: str
    max_message_bytes: int
    streams: list[tuple[str, list[bytes]]]  # (token, serialized batches) per device


@dataclass(frozen=True)
class ClientResult:
    started: float  # time.time() when streaming began
    finished: float
    cpu_seconds: float
    committed: list[int]
    accepted: int
    duplicates: int
    rejected: int
    error: str | None = None


async def _stream(
    channel: grpc.aio.Channel, token: str, batches: list[bytes]
) -> ingest_pb2.UploadReadingsResponse:
    upload = channel.stream_unary(
        UPLOAD_METHOD, response_deserializer=ingest_pb2.UploadReadingsResponse.FromString
    )

    async def requests() -> AsyncIterator[bytes]:
        for batch in batches:
            yield batch

    response: ingest_pb2.UploadReadingsResponse = await upload(
        requests(), metadata=(("authorization", f"Bearer {token}"),)
    )
    return response


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(job: ClientJob, pipe: Connection) -> ClientResult:
    options = [("grpc.max_send_message_length", job.max_message_bytes)]
    async with grpc.aio.insecure_channel(job.address, options=options) as channel:
        await channel.channel_ready()
        pipe.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go"
        cpu, started = _cpu(), time.time()
        try:
            responses = await asyncio.gather(
                *(_stream(channel, token, batches) for token, batches in job.streams)
            )
        except grpc.aio.AioRpcError as exc:
            return ClientResult(
                started, time.time(), _cpu() - cpu, [], 0, 0, 0, f"{exc.code().name}: {exc.details()}"
            )
        finished = time.time()
    return ClientResult(
        started,
        finished,
        _cpu() - cpu,
        [r.committed_sequence for r in responses],
        sum(r.accepted_count for r in responses),
        sum(r.duplicate_count for r in responses),
        sum(r.rejected_count for r in responses),
    )


def main(pipe: Connection) -> None:
    """Entry point of the client process."""
    job: ClientJob = pipe.recv()
    pipe.send(asyncio.run(_run(job, pipe)))
