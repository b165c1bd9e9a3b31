"""Simulated gateways for `sensormesh bench query`: a steady upload load, from processes of their own.

Each gateway uploads the way the agent does at its defaults: when its oldest
unsent reading has waited a second (`batch_max_age`), a batch with that
second's readings, on an UploadReadings stream. A device-second is the ingest
benchmark's mix (`sensormesh_bench/workload.py`: 100 Hz IMU, 1 Hz
environment, two 1 Hz measurements, system every 10 s; 605 samples), with
sample times of the second just past. Gateways' batches are spread evenly
over the second, so the load is steady rather than a burst each second.

The same process watches its gateways' live feeds on the query service, so
the load is also read back and fanned out, and counts what arrives.

Per process it reports, by Unix second: samples sent, samples received by
its subscribers, and how late each batch left against its schedule.

Protocol over the pipe: receive a `GatewayJob`, send "ready", receive the
start time (Unix seconds), run, send a `GatewayResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, query_pb2, query_pb2_grpc, reading_pb2

from sensormesh_bench.workload import SYSTEM_EVERY_S, device_readings
from sensormesh_cli.bearer import aio_interceptors

SAMPLES = {"imu": 6, "environment": 3, "system": 3, "measurement": 1}


@dataclass(frozen=True)
class GatewayJob:
    ingest_address: str
    query_address: str
    api_key: str  # the feeds' API key (viewer or higher)
    gateways: list[tuple[str, str, float]]  # device id, token, phase in the second (s)
    seconds: float  # how long to upload


@dataclass
class GatewayResult:
    sent_samples: Counter[int] = field(default_factory=Counter)  # by Unix second the batch left
    received_samples: Counter[int] = field(default_factory=Counter)  # by Unix second it arrived
    lags_ms: list[float] = field(default_factory=list)  # batch send time minus its schedule
    sent_readings: int = 0
    committed_readings: int = 0  # from the streams' responses
    received_readings: int = 0
    missed_readings: int = 0
    error: str | None = None


class _Templates:
    """SYSTEM_EVERY_S device-seconds of readings, as (nanoseconds into the second, reading)."""

    def __init__(self) -> None:
        readings = device_readings(SYSTEM_EVERY_S, 0)
        self.seconds: list[list[tuple[int, reading_pb2.Reading]]] = [[] for _ in range(SYSTEM_EVERY_S)]
        for reading in readings:
            stamp = reading.sample_time
            self.seconds[stamp.seconds].append((stamp.nanos, reading))

    def batch(self, device_id: str, second: int, start_ns: int, first: int) -> tuple[bytes, int, int]:
        """The serialized batch for `second` (counted from 0) starting at `start_ns`; readings, samples."""
        chunk = self.seconds[second % SYSTEM_EVERY_S]
        request = ingest_pb2.UploadReadingsRequest(
            device_id=device_id, first_sequence=first, last_sequence=first + len(chunk) - 1
        )
        samples = 0
        for offset, (nanos, template) in enumerate(chunk):
            item = request.readings.add(sequence=first + offset)
            item.reading.CopyFrom(template)
            at = start_ns + nanos
            item.reading.sample_time.CopyFrom(
                Timestamp(seconds=at // 1_000_000_000, nanos=at % 1_000_000_000)
            )
            samples += SAMPLES[template.WhichOneof("payload") or "measurement"]
        return request.SerializeToString(), len(chunk), samples


async def _gateway(
    channel: grpc.aio.Channel,
    gateway: tuple[str, str, float],
    start: float,
    seconds: float,
    templates: _Templates,
    result: GatewayResult,
) -> None:
    device_id, token, phase = gateway

    async def batches() -> AsyncIterator[bytes]:
        sequence = 1
        for second in range(int(seconds)):
            covers = start + phase + second
            due = covers + 1.0  # the oldest reading has waited batch_max_age
            await asyncio.sleep(max(0.0, due - time.time()))
            now = time.time()
            payload, readings, samples = templates.batch(device_id, second, int(covers * 1e9), sequence)
            sequence += readings
            result.lags_ms.append((now - due) * 1000)
            result.sent_samples[int(now)] += samples
            result.sent_readings += readings
            yield payload

    upload = channel.stream_unary(
        "/sensormesh.v1.IngestService/UploadReadings",
        response_deserializer=ingest_pb2.UploadReadingsResponse.FromString,
    )
    response: ingest_pb2.UploadReadingsResponse = await upload(
        batches(), metadata=(("authorization", f"Bearer {token}"),)
    )
    result.committed_readings += response.accepted_count


async def _watch(stream: grpc.aio.UnaryStreamCall, result: GatewayResult) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for message in stream:
            second = int(time.time())
            result.received_readings += len(message.readings)
            result.missed_readings += message.missed_count
            result.received_samples[second] += sum(
                SAMPLES[r.WhichOneof("payload") or "measurement"] for r in message.readings
            )


async def _delivered(result: GatewayResult, seconds: float) -> None:
    """Until the subscribers have every committed reading (or were told they missed some)."""
    deadline = time.monotonic() + seconds
    while result.received_readings + result.missed_readings < result.committed_readings:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def _run(job: GatewayJob, pipe: Connection) -> GatewayResult:
    result = GatewayResult()
    templates = _Templates()
    async with (
        grpc.aio.insecure_channel(job.ingest_address) as ingest,
        grpc.aio.insecure_channel(job.query_address, interceptors=aio_interceptors(job.api_key)) as query,
    ):
        await ingest.channel_ready()
        stub = query_pb2_grpc.QueryServiceStub(query)
        feeds = [stub.WatchReadings(query_pb2.WatchReadingsRequest(device_id=g[0])) for g in job.gateways]
        for feed in feeds:
            await feed.initial_metadata()  # subscribed: every later commit reaches it
        watchers = [asyncio.create_task(_watch(feed, result)) for feed in feeds]
        pipe.send("ready")
        start: float = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        try:
            await asyncio.gather(
                *(_gateway(ingest, g, start, job.seconds, templates, result) for g in job.gateways)
            )
            await _delivered(result, 10.0)
        except grpc.aio.AioRpcError as exc:
            result.error = f"{exc.code().name}: {exc.details()}"
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
    return result


def main(pipe: Connection) -> None:
    """Entry point of a gateway process."""
    job: GatewayJob = pipe.recv()
    pipe.send(asyncio.run(_run(job, pipe)))
