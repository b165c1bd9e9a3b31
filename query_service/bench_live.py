"""Live-feed latency under a steady write load, for `sensormesh bench query`.

A probe device gets one reading every 20 ms; its commit acknowledgement time
is noted, and a WatchReadings subscriber notes when the reading arrives. The
load devices are watched too (and drained), so the query process reads back
and fans out the load's commits while the probe is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from sensormesh.v1 import query_pb2, query_pb2_grpc

from query_service.bench_load import LoadSource, WriterProbe

PROBE_PERIOD_S = 0.02


async def _drain(stream: Any, counter: dict[str, int]) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for message in stream:
            counter["readings"] += len(message.readings)
            counter["missed"] += message.missed_count


async def _receive(stream: Any, received: dict[tuple[int, int], float]) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for message in stream:
            now = time.time()
            for reading in message.readings:
                received[(reading.sample_time.seconds, reading.sample_time.nanos)] = now


async def measure_live(
    args: argparse.Namespace,
    url: str,
    grpc_target: str,
    probe_device: str,
    load_devices: list[str],
    load: LoadSource,
) -> dict[str, Any]:
    from query_service.bench import percentile

    committed: dict[tuple[int, int], float] = {}
    received: dict[tuple[int, int], float] = {}
    counter = {"readings": 0, "missed": 0}
    conn = await asyncpg.connect(url)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        streams = [stub.WatchReadings(query_pb2.WatchReadingsRequest(device_id=d)) for d in load_devices]
        probe_stream = stub.WatchReadings(query_pb2.WatchReadingsRequest(device_id=probe_device))
        for stream in (*streams, probe_stream):
            await stream.initial_metadata()
        tasks = [asyncio.create_task(_drain(s, counter)) for s in streams]
        tasks.append(asyncio.create_task(_receive(probe_stream, received)))
        load.start(load_devices, args.load_samples_per_s, args.live_seconds + 2)
        try:
            await asyncio.sleep(1.0)  # let the load reach its pace
            probe = WriterProbe(conn)
            until = time.monotonic() + args.live_seconds
            while time.monotonic() < until:
                moment = datetime.now(UTC)
                commit_time = await probe.commit(probe_device, moment)
                stamp = int(moment.timestamp()), moment.microsecond * 1000
                committed[stamp] = commit_time
                await asyncio.sleep(PROBE_PERIOD_S)
            achieved = await asyncio.to_thread(load.finish)
            for _ in range(100):  # the last probe readings: up to 5 s
                if len(received) >= len(committed):
                    break
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await conn.close()
    latencies = [(received[key] - at) * 1000 for key, at in committed.items() if key in received]
    if not latencies:
        raise RuntimeError("no probe reading reached its subscriber")
    return {
        "live_p50_ms": round(percentile(latencies, 0.5), 3),
        "live_p99_ms": round(percentile(latencies, 0.99), 3),
        "live_probe_readings": len(committed),
        "live_probe_lost": len(committed) - len(latencies),
        "live_load_source": load.name,
        "live_load_samples_per_s": round(float(achieved["samples_per_s"])),
        "live_load_batches_per_s": round(float(achieved["batches_per_s"]), 1),
        "live_load_readings_delivered": counter["readings"],
        "live_load_readings_missed": counter["missed"],
    }
