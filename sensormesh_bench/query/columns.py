"""The one-day read at 1-minute buckets in columns, for `sensormesh bench query`: direct gRPC,
REST through Envoy with a C client (libcurl, through pycurl) and with httpx, and the size of
its JSON as rows and columns, plain and compressed as Envoy sends it.

Why two REST clients: httpx spends as long parsing HTTP/1.1 in Python as Envoy spends
transcoding, so its figure says more about Python than about the API. libcurl is what most
non-Python clients amount to (curl itself, and the C libraries under most languages' HTTP
clients). Every client parses the answer, as the gRPC client parses its protobuf: a client that
did not read the answer would time less than a client pays. libcurl's answer is parsed by orjson,
a native parser, as a non-Python client's is (a browser's `JSON.parse`, Go's or Rust's decoders);
it still makes every value a Python object, as `json.loads` does, but the standard library's
float parsing costs about 1 ms on this answer, more than Envoy's transcoding of the floats, so
timing it would measure Python's float parser, not the API. The same libcurl read parsed by
`json.loads` is timed beside it (`rest_columns_curl_stdlib_json_*`), and httpx parses with
`response.json()`, as a Python client usually does.

Timed answers are uncompressed (`accept-encoding: identity`): on loopback compression costs
Envoy's CPU and gains nothing; what it gains on a real network is the sizes reported beside.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import inspect
import json
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

import grpc
import httpx
import orjson
import pycurl
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_bench.query.timing import latency_figures
from sensormesh_cli.bearer import aio_interceptors

VIEW = "READINGS_VIEW_COLUMNS"


class CurlClient:
    """One libcurl handle, reused (its connection stays open, as httpx's does), sending the key."""

    def __init__(self, base_url: str, key: str) -> None:
        self._base = base_url
        self._key = key
        self._curl = pycurl.Curl()

    def get(self, path: str, query: dict[str, str], accept_encoding: str = "identity") -> bytes:
        """The body of a GET as it arrived (compressed if Envoy compressed it); raises unless 200."""
        body = BytesIO()
        self._curl.setopt(pycurl.URL, str(httpx.URL(self._base + path, params=query)))
        self._curl.setopt(
            pycurl.HTTPHEADER, [f"authorization: Bearer {self._key}", f"accept-encoding: {accept_encoding}"]
        )
        self._curl.setopt(pycurl.WRITEDATA, body)
        self._curl.perform()
        status = self._curl.getinfo(pycurl.RESPONSE_CODE)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body.getvalue()[:500]!r}")
        return body.getvalue()

    def close(self) -> None:
        self._curl.close()


def timed_blocking(count: int, call: Callable[[], Any]) -> list[float]:
    """Milliseconds of `count` sequential calls after two warm-up calls (libcurl blocks)."""
    for _ in range(2):
        call()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return found


async def columns_figures(
    args: argparse.Namespace,
    grpc_target: str,
    rest_url: str,
    key: str,
    minute: query_pb2.ListReadingsRequest,
    rest: tuple[str, dict[str, str]],
) -> dict[str, Any]:
    """The minute-day read in columns over direct gRPC and over REST (libcurl, httpx), the
    same read as rows over REST with libcurl, the JSON sizes, and the ratios to gRPC.

    The three columns reads take turns, call by call, so a spell of other work on the machine
    falls on all three alike and the ratios compare like with like."""
    path, query = rest
    columns_query = {**query, "view": VIEW}
    request = query_pb2.ListReadingsRequest()
    request.CopyFrom(minute)
    request.view = query_pb2.READINGS_VIEW_COLUMNS
    headers = {"authorization": f"Bearer {key}", "accept-encoding": "identity"}
    curl = CurlClient(rest_url, key)
    try:
        async with (
            grpc.aio.insecure_channel(grpc_target, interceptors=aio_interceptors(key)) as channel,
            httpx.AsyncClient(base_url=rest_url, headers=headers, timeout=60) as http,
        ):
            stub = query_pb2_grpc.QueryServiceStub(channel)
            got = await stub.ListReadings(request)
            if sum(len(c.time_micros) for c in got.columns) != 1440:
                raise RuntimeError("the seeded day does not read back as 1,440 one-minute buckets in columns")

            async def httpx_get() -> None:
                response = await http.get(path, params=columns_query)
                response.raise_for_status()
                response.json()

            timings = await _taking_turns(
                args.iterations,
                {
                    "range_day_1m_columns": lambda: stub.ListReadings(request),
                    "rest_columns_curl_range_day_1m": lambda: orjson.loads(curl.get(path, columns_query)),
                    "rest_columns_httpx_range_day_1m": httpx_get,
                    "rest_columns_curl_stdlib_json_range_day_1m": lambda: json.loads(
                        curl.get(path, columns_query)
                    ),
                },
            )
        figures: dict[str, Any] = {"range_day_1m_columns_grpc_bytes": got.ByteSize()}
        for name, samples in timings.items():
            figures |= latency_figures(name, samples)
        figures |= _json_sizes(curl, path, query, columns_query)
        figures |= _parse_figures(args.iterations, curl.get(path, columns_query))
        figures |= latency_figures(
            "rest_curl_range_day_1m",
            timed_blocking(args.iterations, lambda: orjson.loads(curl.get(path, query))),
        )
        figures |= latency_figures(
            "rest_columns_curl_gzip_range_day_1m",
            timed_blocking(
                args.iterations, lambda: orjson.loads(gzip.decompress(curl.get(path, columns_query, "gzip")))
            ),
        )
    finally:
        curl.close()
    grpc_p50 = figures["range_day_1m_columns_p50_ms"]
    figures["rest_columns_grpc_ratio"] = round(figures["rest_columns_curl_range_day_1m_p50_ms"] / grpc_p50, 3)
    for client in ("httpx", "curl_stdlib_json"):
        figures[f"rest_columns_{client}_grpc_ratio"] = round(
            figures[f"rest_columns_{client}_range_day_1m_p50_ms"] / grpc_p50, 3
        )
    return figures


async def _taking_turns(count: int, calls: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    """Milliseconds of `count` rounds of `calls`, one of each per round in turn, after two
    warm-up rounds; a call may be blocking or return an awaitable."""
    found: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(count + 2):
        for name, call in calls.items():
            started = time.perf_counter()
            result = call()
            if inspect.isawaitable(result):
                await result
            if round_ >= 2:
                found[name].append((time.perf_counter() - started) * 1000)
    return found


def _parse_figures(count: int, body: bytes) -> dict[str, float]:
    """Milliseconds the client spends parsing the columns answer, with the standard library
    and with orjson: what REST's figures include beside Envoy's and the network's share."""
    figures: dict[str, float] = {}
    for parser, loads in (("stdlib", json.loads), ("orjson", orjson.loads)):
        figures |= latency_figures(
            f"json_day_1m_columns_{parser}_parse", timed_blocking(count, functools.partial(loads, body))
        )
    return figures


def _json_sizes(
    curl: CurlClient, path: str, query: dict[str, str], columns_query: dict[str, str]
) -> dict[str, int]:
    """Bytes of the minute-day answer as Envoy sends it: rows and columns, plain, gzip, brotli."""
    figures = {}
    for layout, params in (("rows", query), ("columns", columns_query)):
        for encoding, suffix in (("identity", ""), ("gzip", "_gzip"), ("br", "_br")):
            figures[f"json_day_1m_{layout}{suffix}_bytes"] = len(curl.get(path, params, encoding))
    return figures
