"""A bounded soak: gateways uploading steadily, live subscribers and readers, for
SENSORMESH_SOAK_SECONDS (150 by default; set it to 3600 for an hour). Every upload
is committed, every live feed gets every reading once and in order, no call fails,
and the resident memory of ingest, query and Envoy stays flat."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from sensormesh.v1 import query_pb2_grpc

from sensormesh_cli.bearer import aio_interceptors
from tests.envoy.conftest import Stack, module_database_url, stack  # noqa: F401 - fixtures
from tests.soak.conftest import SUMMARY
from tests.soak.load import RealTimeGateway, Tally, read_until, upload_until, watch
from tests.support.uploads import register_gateways

SECONDS = float(os.environ.get("SENSORMESH_SOAK_SECONDS", "150"))
GATEWAYS = 20
READERS = 2
# Memory is compared over the part of the run after warm-up (pools fill, caches warm, the
# allocator finds its size: the query service takes about a minute): the median of the
# last 30 % against the median of the 30 % before. A leak of about 60 bytes per uploaded
# batch (40 a second) would pass the limit in the CI run's 45 s between the two.
WARM_UP = 0.4
FLAT_MIB = 2.5

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SECONDS + 240)]


async def _sample_memory(pids: dict[str, int], stop: float) -> dict[str, list[tuple[float, float]]]:
    """(seconds since start, RSS in MiB) of each process, every second."""
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
    started = time.monotonic()
    while time.monotonic() < stop:
        for name, process in processes.items():
            samples[name].append((time.monotonic() - started, process.memory_info().rss / 2**20))
        await asyncio.sleep(1.0)
    return samples


def _growth_mib(samples: list[tuple[float, float]]) -> float:
    """Median RSS of the last 30 % of the run minus that of the 30 % before."""
    values = [rss for _, rss in samples]
    middle, late = int(len(values) * WARM_UP), int(len(values) * 0.7)
    return statistics.median(values[late:]) - statistics.median(values[middle:late])


async def test_memory_stays_flat_and_nothing_fails_under_steady_load(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    gateways = await register_gateways(stack.database_url, "soak", GATEWAYS, RealTimeGateway)
    tally = Tally()
    pids = {
        "ingest": stack.ingest_pid,
        "query": stack.query_pid,
        "envoy": stack.envoy.process.pid,
    }
    ingest = grpc.aio.insecure_channel(f"127.0.0.1:{stack.ingest_port}")
    query = grpc.aio.insecure_channel(
        f"127.0.0.1:{stack.query_port}", interceptors=aio_interceptors(stack.admin_key)
    )
    stub = query_pb2_grpc.QueryServiceStub(query)
    feeds = [asyncio.create_task(watch(stub, g.device_id, tally)) for g in gateways]
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=20, headers=stack.admin_headers) as http:
            stop = time.monotonic() + SECONDS
            memory, *_ = await asyncio.gather(
                _sample_memory(pids, stop),
                *(upload_until(g, ingest, stop, tally) for g in gateways),
                *(
                    read_until(stub, http, [g.device_id for g in gateways], stop, tally)
                    for _ in range(READERS)
                ),
            )
        await _until_delivered(tally)
    finally:
        for feed in feeds:
            feed.cancel()
        await asyncio.gather(*feeds, return_exceptions=True)
        await ingest.close()
        await query.close()

    assert tally.errors == []
    uploaded = sum(tally.uploaded.values())
    assert uploaded > GATEWAYS * RATE_FLOOR * SECONDS, tally.uploaded  # the load was real
    for gateway in gateways:
        numbers = tally.delivered[gateway.device_id]
        assert numbers == list(range(1, tally.uploaded[gateway.device_id] + 1)), gateway.device_id
    assert tally.missed == 0
    assert tally.reads > 10 * SECONDS / 60
    growth = {name: round(_growth_mib(samples), 2) for name, samples in memory.items()}
    SUMMARY.append(
        f"{SECONDS:.0f} s: {uploaded} readings uploaded, committed and delivered live once and in order, "
        f"{tally.reads} read rounds, RSS growth after warm-up (MiB) {growth}"
    )
    for name, samples in memory.items():
        tenths = [round(samples[len(samples) * i // 10][1], 1) for i in range(10)]
        SUMMARY.append(f"{name} RSS (MiB) at each tenth of the run: {[*tenths, round(samples[-1][1], 1)]}")
    for name, mib in growth.items():
        assert mib < FLAT_MIB, (name, memory[name])


RATE_FLOOR = 90  # readings a second per gateway actually uploaded (of 100 taken)


async def _until_delivered(tally: Tally, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while any(len(tally.delivered.get(d, [])) < n for d, n in tally.uploaded.items()):
        if time.monotonic() > deadline:
            return  # the assertions say what is missing
        await asyncio.sleep(0.1)
