"""Live-feed latency while the ingest service takes a steady load, for `sensormesh bench query`.

A probe device writes one reading every 20 ms with WriteReadings through the
same `sensormesh ingest` process as the load. WriteReadings answers once the
reading's transaction has committed: that answer is the moment ingest
accepted the reading. A WatchReadings subscriber of the probe device on the
query process notes when the reading arrives. Latency = arrival - answer
(`live_*`); arrival - request sent is reported too (`live_from_send_*`, an
upper bound that includes the write itself). Both ends run in this process,
on one clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc, reading_pb2

from sensormesh_bench.query.load import GatewayLoad, steadiness
from sensormesh_bench.query.timing import percentile
from sensormesh_cli.bearer import aio_interceptors

PROBE_PERIOD_S = 0.02
WARM_UP_S = 2.0


async def _receive(stream: Any, received: dict[tuple[int, int], float]) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for message in stream:
            now = time.time()
            for reading in message.readings:
                received[(reading.sample_time.seconds, reading.sample_time.nanos)] = now


async def _probe(
    ingest: ingest_pb2_grpc.IngestServiceStub, device_id: str, token: str, seconds: float
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
    """Write a reading every PROBE_PERIOD_S for `seconds`; when each was sent and acknowledged."""
    metadata = (("authorization", f"Bearer {token}"),)
    sent: dict[tuple[int, int], float] = {}
    acknowledged: dict[tuple[int, int], float] = {}
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        stamp = Timestamp()
        stamp.GetCurrentTime()
        reading = reading_pb2.Reading(
            sensor="probe",
            sample_time=stamp,
            environment=reading_pb2.EnvironmentPayload(temperature_celsius=20),
        )
        key = (stamp.seconds, stamp.nanos)
        sent[key] = time.time()
        await ingest.WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=device_id, readings=[reading]), metadata=metadata
        )
        acknowledged[key] = time.time()
        await asyncio.sleep(PROBE_PERIOD_S)
    return sent, acknowledged


async def measure_live(
    args: argparse.Namespace,
    ingest_address: str,
    query_address: str,
    key: str,
    probe: tuple[str, str],
    gateways: dict[str, str],
    load: GatewayLoad,
    cpu: dict[str, Callable[[], float | None]],
) -> dict[str, Any]:
    """Live figures; `key` is the API key the feed is opened with; `cpu` names processes and
    reads their CPU seconds (for where the time goes)."""

    received: dict[tuple[int, int], float] = {}
    await load.prepare(gateways, WARM_UP_S + args.live_seconds + 1)
    async with (
        grpc.aio.insecure_channel(ingest_address) as ingest_channel,
        grpc.aio.insecure_channel(query_address, interceptors=aio_interceptors(key)) as query_channel,
    ):
        stream = await _watch(query_channel, probe[0])
        receiver = asyncio.create_task(_receive(stream, received))
        load.go(time.time())
        try:
            await asyncio.sleep(WARM_UP_S)  # every gateway has uploaded twice: the load is at its pace
            window_start = time.time()
            cpu_before = {name: read() for name, read in cpu.items()}
            sent, acknowledged = await _probe(
                ingest_pb2_grpc.IngestServiceStub(ingest_channel), *probe, args.live_seconds
            )
            window_end = time.time()
            cpu_used = _cpu_percent(cpu, cpu_before, window_end - window_start)
            results = await load.finish()
        finally:
            receiver.cancel()
    figures = _probe_figures(sent, acknowledged, received)
    figures["live_load_gateways"] = len(gateways)
    return figures | steadiness(results, math.ceil(window_start), math.floor(window_end) - 1) | cpu_used


async def _watch(channel: grpc.aio.Channel, device_id: str) -> grpc.aio.UnaryStreamCall:
    """The probe device's live feed, once the query service has answered, so the
    feed is open before the first probe reading is written."""
    stream = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
        query_pb2.WatchReadingsRequest(device_id=device_id)
    )
    await stream.initial_metadata()
    return stream


def _probe_figures(
    sent: dict[tuple[int, int], float],
    acknowledged: dict[tuple[int, int], float],
    received: dict[tuple[int, int], float],
) -> dict[str, Any]:
    """Probe latencies from ingest's answer and from the send (an upper bound that
    includes the write), and how many probe readings never reached the feed."""
    latencies = [(received[key] - at) * 1000 for key, at in acknowledged.items() if key in received]
    from_send = [(received[key] - at) * 1000 for key, at in sent.items() if key in received]
    if not latencies:
        raise RuntimeError("no probe reading reached its subscriber")
    return {
        "live_p50_ms": round(percentile(latencies, 0.5), 3),
        "live_p99_ms": round(percentile(latencies, 0.99), 3),
        "live_max_ms": round(max(latencies), 3),
        "live_from_send_p50_ms": round(percentile(from_send, 0.5), 3),
        "live_from_send_p99_ms": round(percentile(from_send, 0.99), 3),
        "live_probe_readings": len(acknowledged),
        "live_probe_lost": len(acknowledged) - len(latencies),
    }


def _cpu_percent(
    cpu: dict[str, Callable[[], float | None]], before: dict[str, float | None], seconds: float
) -> dict[str, float]:
    """Each process's CPU over the window, in percent of one core."""
    found = {}
    for name, read in cpu.items():
        start, end = before[name], read()
        if start is not None and end is not None:
            found[f"live_cpu_{name}_pct"] = round(100 * (end - start) / seconds, 1)
    return found
