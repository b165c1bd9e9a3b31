"""The soak's load: gateways uploading in real time, live subscribers, and readers.

Each gateway takes 100 readings a second (the `Gateway` mix: IMU, environment,
generic measurement, each value encoding its sequence number) stamped with the
wall clock, and uploads them in half-second batches on UploadReadings streams
of ten batches, as the agent's uplink does. Each has a live feed on the query
service that must receive every reading once, in order. Readers call
GetLatestReadings and ListReadings (raw and downsampled) over gRPC and REST.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc

from tests.support.uploads import Gateway, sequence_of

RATE_HZ = 100
BATCH_S = 0.5
BATCHES_PER_STREAM = 10


@dataclass(frozen=True)
class RealTimeGateway(Gateway):
    """A `Gateway` whose reading n is sampled at start + n / RATE_HZ seconds: the wall clock."""

    start_ns: int = field(default_factory=time.time_ns)

    def sample_time(self, sequence: int) -> Timestamp:
        nanos = self.start_ns + sequence * (1_000_000_000 // RATE_HZ)
        return Timestamp(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)

    def taken_by_now(self) -> int:
        """The last sequence number sampled by now."""
        return (time.time_ns() - self.start_ns) * RATE_HZ // 1_000_000_000


@dataclass
class Tally:
    """What the load did and what went wrong (every error is kept, for the failure message)."""

    uploaded: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, list[int]] = field(default_factory=dict)
    missed: int = 0
    reads: int = 0
    errors: list[str] = field(default_factory=list)


async def upload_until(
    gateway: RealTimeGateway, channel: grpc.aio.Channel, stop: float, tally: Tally
) -> None:
    sent = 0

    async def batches() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        nonlocal sent
        for _ in range(BATCHES_PER_STREAM):
            await asyncio.sleep(BATCH_S)
            last = gateway.taken_by_now()
            if last > sent:
                yield gateway.batch(sent + 1, last)
                sent = last

    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    while time.monotonic() < stop:
        try:
            response = await stub.UploadReadings(batches(), metadata=gateway.metadata, timeout=30)
        except grpc.aio.AioRpcError as error:
            tally.errors.append(f"upload {gateway.device_id}: {error.code().name} {error.details()}")
            return
        if response.committed_sequence != sent:
            tally.errors.append(
                f"upload {gateway.device_id}: committed {response.committed_sequence} of {sent}"
            )
        tally.uploaded[gateway.device_id] = sent


async def watch(stub: query_pb2_grpc.QueryServiceStub, device_id: str, tally: Tally) -> None:
    """The device's live feed until cancelled; every sequence number received, in arrival order."""
    received = tally.delivered.setdefault(device_id, [])
    try:
        async for response in stub.WatchReadings(query_pb2.WatchReadingsRequest(device_id=device_id)):
            tally.missed += response.missed_count
            received.extend(sequence_of(r) for r in response.readings)
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.CANCELLED:
            tally.errors.append(f"watch {device_id}: {error.code().name} {error.details()}")


async def read_until(
    stub: query_pb2_grpc.QueryServiceStub,
    http: httpx.AsyncClient,
    devices: list[str],
    stop: float,
    tally: Tally,
) -> None:
    """A reader: latest values, the last minute raw, the last hour by minute, over gRPC and REST."""
    chance = random.Random(11)
    while time.monotonic() < stop:
        device = chance.choice(devices)
        start = Timestamp()
        start.FromSeconds(int(time.time()) - 3600)
        try:
            await stub.GetLatestReadings(query_pb2.GetLatestReadingsRequest(device_id=device), timeout=10)
            await stub.ListReadings(
                query_pb2.ListReadingsRequest(
                    device_id=device, quantities=["angular_rate_x"], page_size=6000
                ),
                timeout=10,
            )
            await stub.ListReadings(
                query_pb2.ListReadingsRequest(
                    device_id=device, start_time=start, interval=Duration(seconds=60)
                ),
                timeout=10,
            )
            response = await http.get(f"/v1/devices/{device}/readings", params={"interval": "60s"})
            if response.status_code != 200:
                tally.errors.append(f"REST read {device}: {response.status_code} {response.text[:200]}")
        except grpc.aio.AioRpcError as error:
            tally.errors.append(f"read {device}: {error.code().name} {error.details()}")
        tally.reads += 1
        await asyncio.sleep(0.1)
