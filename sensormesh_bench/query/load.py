"""Where `sensormesh bench query` gets its data: everything goes through a real
`sensormesh ingest` process, as it does in a deployment.

- `seed_history`: one day of 1 Hz readings of one device, uploaded in batches
  of 10,000 on one UploadReadings stream;
- `GatewayLoad`: simulated gateways in processes of their own
  (bench_gateways.py), each uploading its real-time readings once a second,
  together a steady `samples_per_s`, and watching its own live feed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from sensormesh_bench.query import gateways as bench_gateways
from sensormesh_core.storage.registry import create_device

DAY = timedelta(days=1)
SEED_BATCH = 10_000


async def register(conn: asyncpg.Connection, device_ids: list[str]) -> dict[str, str]:
    """Register the devices; their tokens."""
    tokens = {}
    for device_id in device_ids:
        _, tokens[device_id] = await create_device(conn, device_id)
    return tokens


def day_end() -> datetime:
    """The end of the seeded day: the last full minute."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


async def seed_history(channel: grpc.aio.Channel, device_id: str, token: str, end: datetime) -> None:
    """One day of 1 Hz temperature readings (86,400) ending at `end`, through ingest."""
    start = int((end - DAY).timestamp())

    async def batches() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        for first in range(0, 86_400, SEED_BATCH):
            last = min(first + SEED_BATCH, 86_400)
            request = ingest_pb2.UploadReadingsRequest(
                device_id=device_id, first_sequence=first + 1, last_sequence=last
            )
            for i in range(first, last):
                request.readings.add(
                    sequence=i + 1,
                    reading=reading_pb2.Reading(
                        sensor="bme280",
                        sample_time=Timestamp(seconds=start + i),
                        environment=reading_pb2.EnvironmentPayload(
                            temperature_celsius=20.0 + (i % 600) / 100
                        ),
                    ),
                )
            yield request

    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    response = await stub.UploadReadings(batches(), metadata=(("authorization", f"Bearer {token}"),))
    if response.accepted_count != 86_400:
        raise RuntimeError(f"seeding stored {response.accepted_count} of 86,400 readings")


def samples_per_gateway_second() -> float:
    templates = bench_gateways._Templates()
    total = sum(
        bench_gateways.SAMPLES[r.WhichOneof("payload") or ""] for s in templates.seconds for _, r in s
    )
    return total / len(templates.seconds)


class GatewayLoad:
    """Simulated gateways uploading in real time from `processes` processes."""

    def __init__(self, ingest_address: str, query_address: str, api_key: str, processes: int) -> None:
        self._ingest = ingest_address
        self._query = query_address
        self._api_key = api_key
        self._processes = processes
        self._pipes: list[Any] = []
        self._workers: list[Any] = []

    async def prepare(self, gateways: dict[str, str], seconds: float) -> None:
        """Start the processes, open their streams' channels and feeds; they wait for `go`."""
        per_second = len(gateways)
        phased = [(device, token, n / per_second) for n, (device, token) in enumerate(gateways.items())]
        context = multiprocessing.get_context("spawn")
        for number in range(self._processes):
            parent, child = context.Pipe()
            worker = context.Process(target=bench_gateways.main, args=(child,), daemon=True)
            worker.start()
            job = bench_gateways.GatewayJob(
                self._ingest, self._query, self._api_key, phased[number :: self._processes], seconds
            )
            parent.send(job)
            self._pipes.append(parent)
            self._workers.append(worker)
        loop = asyncio.get_running_loop()
        for pipe in self._pipes:
            if await loop.run_in_executor(None, pipe.recv) != "ready":
                raise RuntimeError("a gateway process failed to start")

    def go(self, start: float) -> None:
        """Begin uploading: the first batches cover the second after `start` (Unix seconds)."""
        for pipe in self._pipes:
            pipe.send(start)

    async def finish(self) -> list[bench_gateways.GatewayResult]:
        loop = asyncio.get_running_loop()
        try:
            results = [await loop.run_in_executor(None, pipe.recv) for pipe in self._pipes]
        finally:
            for worker in self._workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
        errors = [r.error for r in results if r.error]
        if errors:
            raise RuntimeError(f"gateway load failed: {errors[0]}")
        return results


def steadiness(results: list[bench_gateways.GatewayResult], first: int, last: int) -> dict[str, Any]:
    """How steady the load was over the whole Unix seconds first..last (the measured window)."""
    sent: Counter[int] = Counter()
    received: Counter[int] = Counter()
    for result in results:
        sent.update(result.sent_samples)
        received.update(result.received_samples)
    seconds = range(first, max(first, last) + 1)  # a window shorter than two seconds: one second
    per_second = [sent[s] for s in seconds]
    delivered = [received[s] for s in seconds]
    lags = sorted(lag for result in results for lag in result.lags_ms)
    return {
        "live_load_samples_per_s": round(statistics.fmean(per_second)),
        "live_load_min_1s_samples": min(per_second),
        "live_load_max_1s_samples": max(per_second),
        "live_load_delivered_min_1s_samples": min(delivered),
        "live_load_delivered_max_1s_samples": max(delivered),
        "live_load_send_lag_p99_ms": round(lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))], 1),
        "live_load_send_lag_max_ms": round(lags[-1], 1),
        "live_load_readings_sent": sum(r.sent_readings for r in results),
        "live_load_readings_committed": sum(r.committed_readings for r in results),
        "live_load_readings_delivered": sum(r.received_readings for r in results),
        "live_load_readings_missed": sum(r.missed_readings for r in results),
    }
