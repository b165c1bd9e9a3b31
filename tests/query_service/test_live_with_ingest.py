"""Live feeds fed by the real ingest service (in this process, over real gRPC):
what happens when a signal never comes, and when a device is deleted while
it uploads and is watched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import pytest
from pydantic import SecretStr
from sensormesh.v1 import query_pb2, query_pb2_grpc

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from query_service.server import QueryServer, start_query_server
from sensormesh_core.storage.registry import create_device
from tests.query_service.conftest import settings_for_tests
from tests.support.uploads import Gateway, sequence_of

pytestmark = pytest.mark.storage


async def _ingest(database_url: str, **overrides: object) -> IngestServer:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "ingest_listen": "127.0.0.1:0",
        "ingest_notify_window": timedelta(milliseconds=5),
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    return await start(IngestSettings(**(values | overrides)))  # type: ignore[arg-type]


async def _collect(feed: grpc.aio.UnaryStreamCall, count: int) -> tuple[list[query_pb2.Reading], int]:
    readings: list[query_pb2.Reading] = []
    missed = 0
    async with asyncio.timeout(10):
        while len(readings) < count:
            message = await feed.read()
            readings += message.readings
            missed += message.missed_count
    return readings, missed


@pytest.fixture
async def gateway(db: asyncpg.Connection) -> Gateway:
    record, token = await create_device(db, "pi-1")
    return Gateway(record.device_id, token)


@pytest.fixture
async def query(database_url: str) -> AsyncIterator[QueryServer]:
    server = await start_query_server(
        settings_for_tests(live_order_wait=timedelta(milliseconds=300)), database_url=database_url
    )
    try:
        yield server
    finally:
        await server.stop(0.5)


async def test_a_signal_that_never_comes_is_waited_for_then_reported_as_missed(
    database_url: str, query: QueryServer, gateway: Gateway
) -> None:
    """Replica A commits 1..50 but its signal is lost (here: A sends none); replica
    B commits 51..100. The feed waits `live_order_wait` for A's signal, then
    delivers 51..100 with missed_count 50 (the readings are stored, not live)."""
    silent = await _ingest(database_url, ingest_notify=False)
    loud = await _ingest(database_url)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{silent.port}") as to_silent,
            grpc.aio.insecure_channel(f"127.0.0.1:{loud.port}") as to_loud,
            grpc.aio.insecure_channel(f"127.0.0.1:{query.port}") as to_query,
        ):
            feed = query_pb2_grpc.QueryServiceStub(to_query).WatchReadings(
                query_pb2.WatchReadingsRequest(device_id=gateway.device_id)
            )
            await feed.initial_metadata()
            await gateway.upload(to_silent, [gateway.batch(1, 50)])
            await gateway.upload(to_loud, [gateway.batch(51, 100)])
            readings, missed = await _collect(feed, 50)
            assert missed == 50
            assert [sequence_of(r) for r in readings] == list(range(51, 101))
            feed.cancel()
    finally:
        await silent.stop(1)
        await loud.stop(1)
