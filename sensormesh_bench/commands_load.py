"""The commands benchmark's background load: the bench fleet's batches uploaded at a set pace.

Runs in a child process (spawned), so its CPU is not the measuring process's. Each device keeps
one UploadReadings stream open and sends its next batch when the pace says so; the stream is
renewed every `STREAM_BATCHES` batches (an agent's streams are bounded too). Protocol over the
pipe: send "running" once the streams are open; receive "mark" (the warm-up is over: the rate is
measured from here), then "stop"; send the samples/s reached between the two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc
from sensormesh.v1 import ingest_pb2

UPLOAD_METHOD = "/sensormesh.v1.IngestService/UploadReadings"
STREAM_BATCHES = 50


@dataclass(frozen=True)
class LoadJob:
    address: str
    streams: list[tuple[str, list[bytes]]]  # (token, serialized batches) per device
    batch_interval_s: float  # per device: its next batch this long after the last
    samples_per_batch: float


def run_load(job: LoadJob, pipe: Connection) -> None:
    asyncio.run(_run(job, pipe))


async def _run(job: LoadJob, pipe: Connection) -> None:
    stop = asyncio.Event()
    sent = [0] * len(job.streams)
    async with grpc.aio.insecure_channel(
        job.address, options=[("grpc.max_send_message_length", 16 << 20)]
    ) as channel:
        await channel.channel_ready()
        upload = channel.stream_unary(
            UPLOAD_METHOD, response_deserializer=ingest_pb2.UploadReadingsResponse.FromString
        )
        started = time.monotonic()
        tasks = [
            asyncio.create_task(
                _device(
                    upload,
                    token,
                    batches,
                    job,
                    stop,
                    sent,
                    index,
                    started + index * job.batch_interval_s / len(job.streams),
                )
            )
            for index, (token, batches) in enumerate(job.streams)
        ]
        pipe.send("running")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)  # "mark"
        marked, at_mark = time.monotonic(), sum(sent)
        await loop.run_in_executor(None, pipe.recv)  # "stop"
        reached = (sum(sent) - at_mark) * job.samples_per_batch / (time.monotonic() - marked)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(reached)


async def _device(
    upload: grpc.aio.StreamUnaryMultiCallable,
    token: str,
    batches: list[bytes],
    job: LoadJob,
    stop: asyncio.Event,
    sent: list[int],
    index: int,
    first_at: float,
) -> None:
    """Send `batches` in order at the pace, in bounded streams, until stopped or out of data."""
    position = 0
    next_at = first_at

    async def paced(count: int) -> AsyncIterator[bytes]:
        nonlocal position, next_at
        for _ in range(count):
            if stop.is_set() or position >= len(batches):
                return
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            yield batches[position]
            position += 1
            sent[index] += 1
            next_at += job.batch_interval_s

    while not stop.is_set() and position < len(batches):
        await upload(paced(STREAM_BATCHES), metadata=(("authorization", f"Bearer {token}"),))
