"""Read latencies for `sensormesh bench query`: direct gRPC and REST through Envoy."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc


def _stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


async def measure_reads(
    args: argparse.Namespace, grpc_target: str, rest_url: str, device: str, end: datetime
) -> dict[str, Any]:
    from query_service.bench import _figures, timed

    start = end - timedelta(days=1)
    day = {
        "device_id": device,
        "start_time": _stamp(start),
        "end_time": _stamp(end),
        "quantities": ["temperature"],
    }
    raw = query_pb2.ListReadingsRequest(**day, page_size=100_000)  # type: ignore[arg-type]
    minute = query_pb2.ListReadingsRequest(**day, interval=Duration(seconds=60))  # type: ignore[arg-type]
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
    figures |= _figures("latest", grpc_latest) | _figures("range_day_raw", grpc_raw)
    figures |= _figures("range_day_1m", grpc_minute)

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
    figures |= _figures("rest_latest", rest_latest) | _figures("rest_range_day_raw", rest_raw)
    figures |= _figures("rest_range_day_1m", rest_minute)
    figures["rest_grpc_ratio"] = round(
        figures["rest_range_day_1m_p50_ms"] / figures["range_day_1m_p50_ms"], 3
    )
    figures["rest_grpc_ratio_latest"] = round(figures["rest_latest_p50_ms"] / figures["latest_p50_ms"], 3)
    figures["range_day_1m_buckets"] = 1440
    return figures
