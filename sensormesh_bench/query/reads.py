"""Read latencies for `sensormesh bench query`: direct gRPC and REST through Envoy."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_bench.query.timing import latency_figures, timed


async def bring_rollups_up_to_date(url: str) -> dict[str, Any]:
    """Refresh the plain-PostgreSQL rollups until caught up, as ingest's
    refresher would have; TimescaleDB's continuous aggregates are real-time."""
    import asyncpg

    from sensormesh_core.config import StorageSettings
    from sensormesh_core.storage.rollups import has_rollup_tables, refresh_rollups

    conn = await asyncpg.connect(url)
    try:
        if not await has_rollup_tables(conn):
            return {"rollups": "continuous aggregates"}
        started = time.perf_counter()
        while not (await refresh_rollups(conn, StorageSettings(), budget=timedelta(minutes=5))).caught_up:
            pass
        return {"rollups": "refreshed tables", "rollup_refresh_s": round(time.perf_counter() - started, 3)}
    finally:
        await conn.close()


def _day_requests(device: str, end: datetime) -> dict[str, Any]:
    return {
        "device_id": device,
        "start_time": _stamp(end - timedelta(days=1)),
        "end_time": _stamp(end),
        "quantities": ["temperature"],
    }


async def measure_minute_read(
    args: argparse.Namespace | None, grpc_target: str, device: str, end: datetime
) -> tuple[list[float], bytes]:
    """Milliseconds of the day downsampled to 1 minute as things stand (none
    without `args`), and the response, serialized."""

    minute = query_pb2.ListReadingsRequest(**_day_requests(device, end), interval=Duration(seconds=60))
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        got = await stub.ListReadings(minute)
        if sum(len(s.buckets) for s in got.series) != 1440:
            raise RuntimeError("the seeded day does not read back as 1,440 one-minute buckets")
        if args is None:
            return [], got.SerializeToString(deterministic=True)
        timings = await timed(max(10, args.iterations // 4), lambda: stub.ListReadings(minute))
        return timings, got.SerializeToString(deterministic=True)


def _stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


async def measure_reads(
    args: argparse.Namespace, grpc_target: str, rest_url: str, device: str, end: datetime
) -> dict[str, Any]:

    start = end - timedelta(days=1)
    day = _day_requests(device, end)
    raw = query_pb2.ListReadingsRequest(**day, page_size=100_000)
    minute = query_pb2.ListReadingsRequest(**day, interval=Duration(seconds=60))
    latest = query_pb2.GetLatestReadingsRequest(device_id=device)
    figures: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        check = await stub.ListReadings(raw)
        points = sum(len(s.points) for s in check.series)
        if points != 86_400 or check.next_page_token:
            raise RuntimeError(f"the seeded day reads back as {points} points")
        grpc_latest = await timed(args.iterations, lambda: stub.GetLatestReadings(latest))
        grpc_raw = await timed(args.raw_iterations, lambda: stub.ListReadings(raw))
        grpc_minute = await timed(args.iterations, lambda: stub.ListReadings(minute))
    figures |= latency_figures("latest", grpc_latest) | latency_figures("range_day_raw", grpc_raw)
    figures |= latency_figures("range_day_1m", grpc_minute)
    envoy_target = rest_url.removeprefix("http://")
    async with grpc.aio.insecure_channel(envoy_target) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        await stub.ListReadings(minute)
        envoy_latest = await timed(args.iterations, lambda: stub.GetLatestReadings(latest))
        envoy_minute = await timed(args.iterations, lambda: stub.ListReadings(minute))
    figures |= latency_figures("envoy_grpc_latest", envoy_latest) | latency_figures(
        "envoy_grpc_range_day_1m", envoy_minute
    )

    path = f"/v1/devices/{device}/readings"
    params = {
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": end.isoformat().replace("+00:00", "Z"),
    }
    params["quantities"] = "temperature"
    async with httpx.AsyncClient(base_url=rest_url, timeout=60) as http:

        async def get(url: str, query: dict[str, str]) -> None:
            response = await http.get(url, params=query)
            response.raise_for_status()
            response.json()

        rest_latest = await timed(args.iterations, lambda: get(f"{path}:latest", {}))
        rest_raw = await timed(args.raw_iterations, lambda: get(path, {**params, "pageSize": "100000"}))
        rest_minute = await timed(args.iterations, lambda: get(path, {**params, "interval": "60s"}))
    figures |= latency_figures("rest_latest", rest_latest) | latency_figures("rest_range_day_raw", rest_raw)
    figures |= latency_figures("rest_range_day_1m", rest_minute)
    figures["rest_grpc_ratio"] = round(
        figures["rest_range_day_1m_p50_ms"] / figures["range_day_1m_p50_ms"], 3
    )
    figures["rest_grpc_ratio_latest"] = round(figures["rest_latest_p50_ms"] / figures["latest_p50_ms"], 3)
    figures["range_day_1m_buckets"] = 1440
    return figures
