"""Read latencies for `sensormesh bench query`: direct gRPC and REST through Envoy."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_bench.query.columns import columns_figures
from sensormesh_bench.query.timing import latency_figures, timed
from sensormesh_cli.bearer import aio_interceptors


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
    args: argparse.Namespace | None, grpc_target: str, key: str, device: str, end: datetime
) -> tuple[list[float], bytes]:
    """Milliseconds of the day downsampled to 1 minute as things stand (none
    without `args`), and the response, serialized. Calls send the API key `key`."""

    minute = query_pb2.ListReadingsRequest(**_day_requests(device, end), interval=Duration(seconds=60))
    async with grpc.aio.insecure_channel(grpc_target, interceptors=aio_interceptors(key)) as channel:
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


@dataclass(frozen=True)
class _Reads:
    """The three reads the bench times, as gRPC requests: the same requests go
    direct and through Envoy, so the two sets of figures compare like for like."""

    latest: query_pb2.GetLatestReadingsRequest
    raw: query_pb2.ListReadingsRequest
    raw_columns: query_pb2.ListReadingsRequest
    minute: query_pb2.ListReadingsRequest

    @classmethod
    def of(cls, device: str, end: datetime) -> _Reads:
        day = _day_requests(device, end)
        return cls(
            latest=query_pb2.GetLatestReadingsRequest(device_id=device),
            raw=query_pb2.ListReadingsRequest(**day, page_size=100_000),
            raw_columns=query_pb2.ListReadingsRequest(
                **day, page_size=100_000, view=query_pb2.READINGS_VIEW_COLUMNS
            ),
            minute=query_pb2.ListReadingsRequest(**day, interval=Duration(seconds=60)),
        )


async def measure_reads(
    args: argparse.Namespace, grpc_target: str, rest_url: str, key: str, device: str, end: datetime
) -> dict[str, Any]:
    """Latencies of the latest, raw-day and minute-day reads: direct gRPC, gRPC
    through Envoy and REST through Envoy, so REST's cost shows against both.
    Every call sends the API key `key`, as gRPC metadata or the HTTP header."""
    reads = _Reads.of(device, end)
    figures: dict[str, Any] = await _direct_grpc_figures(args, grpc_target, key, reads)
    figures |= await _envoy_grpc_figures(args, rest_url.removeprefix("http://"), key, reads)
    figures |= await _rest_figures(args, rest_url, key, device, end)
    figures["rest_grpc_ratio"] = round(
        figures["rest_range_day_1m_p50_ms"] / figures["range_day_1m_p50_ms"], 3
    )
    minute_rest = (f"/v1/devices/{device}/readings", {**_rest_params(end), "interval": "60s"})
    figures |= await columns_figures(args, grpc_target, rest_url, key, reads.minute, minute_rest)
    figures["rest_grpc_ratio_latest"] = round(figures["rest_latest_p50_ms"] / figures["latest_p50_ms"], 3)
    figures["range_day_1m_buckets"] = 1440
    return figures


async def _direct_grpc_figures(
    args: argparse.Namespace, target: str, key: str, reads: _Reads
) -> dict[str, float]:
    """The three reads straight to the query service: the baseline the others are compared with."""
    async with grpc.aio.insecure_channel(target, interceptors=aio_interceptors(key)) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        await _check_raw_day(stub, reads.raw)
        latest = await timed(args.iterations, lambda: stub.GetLatestReadings(reads.latest))
        raw = await timed(args.raw_iterations, lambda: stub.ListReadings(reads.raw))
        raw_columns = await timed(args.raw_iterations, lambda: stub.ListReadings(reads.raw_columns))
        minute = await timed(args.iterations, lambda: stub.ListReadings(reads.minute))
    figures = latency_figures("latest", latest) | latency_figures("range_day_raw", raw)
    figures |= latency_figures("range_day_raw_columns", raw_columns)
    return figures | latency_figures("range_day_1m", minute)


async def _check_raw_day(stub: query_pb2_grpc.QueryServiceStub, raw: query_pb2.ListReadingsRequest) -> None:
    """Fail unless the raw read returns the whole seeded day in one page: otherwise
    range_day_raw_* would time less than the day they are named after."""
    check = await stub.ListReadings(raw)
    points = sum(len(s.points) for s in check.series)
    if points != 86_400 or check.next_page_token:
        raise RuntimeError(f"the seeded day reads back as {points} points")


async def _envoy_grpc_figures(
    args: argparse.Namespace, target: str, key: str, reads: _Reads
) -> dict[str, float]:
    """The latest and minute-day reads as gRPC through Envoy: what Envoy alone adds, before REST transcoding."""
    async with grpc.aio.insecure_channel(target, interceptors=aio_interceptors(key)) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        await stub.ListReadings(reads.minute)
        latest = await timed(args.iterations, lambda: stub.GetLatestReadings(reads.latest))
        minute = await timed(args.iterations, lambda: stub.ListReadings(reads.minute))
    return latency_figures("envoy_grpc_latest", latest) | latency_figures("envoy_grpc_range_day_1m", minute)


async def _rest_figures(
    args: argparse.Namespace, rest_url: str, key: str, device: str, end: datetime
) -> dict[str, float]:
    """The three reads as REST through Envoy, the way a web client makes them, uncompressed
    (loopback gains nothing from Envoy's compression; columns.py reports the sizes)."""
    path = f"/v1/devices/{device}/readings"
    params = _rest_params(end)
    headers = {"authorization": f"Bearer {key}", "accept-encoding": "identity"}
    async with httpx.AsyncClient(base_url=rest_url, headers=headers, timeout=60) as http:
        latest = await timed(args.iterations, lambda: _rest_get(http, f"{path}:latest", {}))
        raw = await timed(
            args.raw_iterations, lambda: _rest_get(http, path, {**params, "pageSize": "100000"})
        )
        minute = await timed(args.iterations, lambda: _rest_get(http, path, {**params, "interval": "60s"}))
    figures = latency_figures("rest_latest", latest) | latency_figures("rest_range_day_raw", raw)
    return figures | latency_figures("rest_range_day_1m", minute)


async def _rest_get(http: httpx.AsyncClient, url: str, query: dict[str, str]) -> None:
    """One REST read, its body parsed: decoding the JSON is part of what a REST client pays."""
    response = await http.get(url, params=query)
    response.raise_for_status()
    response.json()


def _rest_params(end: datetime) -> dict[str, str]:
    """The seeded day's temperature, as REST query parameters."""
    return {
        "startTime": _rest_time(end - timedelta(days=1)),
        "endTime": _rest_time(end),
        "quantities": "temperature",
    }


def _rest_time(moment: datetime) -> str:
    """A UTC moment as the REST API writes timestamps (RFC 3339, with Z)."""
    return moment.isoformat().replace("+00:00", "Z")
