"""A real query server on a free port over a fresh database, its stubs, and
the ingest-like writer that produces readings and commit signals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import pytest
from sensormesh.v1 import device_pb2_grpc, query_pb2_grpc

from query_service.server import QueryServer, start_query_server
from query_service.settings import QuerySettings
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage.registry import create_device
from tests.support.access import make_key
from tests.support.reading_writer import ReadingWriter


def settings_for_tests(**overrides: object) -> QuerySettings:
    values: dict[str, object] = {
        "query_listen": "127.0.0.1:0",
        "pool_min_size": 1,
        "pool_max_size": 4,
        "heartbeat_interval": timedelta(seconds=15),
    }
    values.update(overrides)
    return QuerySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def query_settings() -> QuerySettings:
    return settings_for_tests()


@pytest.fixture
async def query_server(database_url: str, query_settings: QuerySettings) -> AsyncIterator[QueryServer]:
    server = await start_query_server(query_settings, database_url=database_url)
    try:
        yield server
    finally:
        await server.stop(0.5)


@pytest.fixture
async def admin_key(database_url: str) -> str:
    """An admin API key on the test database."""
    return await make_key(database_url, "test-admin")


@pytest.fixture
async def channel(query_server: QueryServer, admin_key: str) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the query server whose calls carry the admin key."""
    address = f"127.0.0.1:{query_server.port}"
    async with grpc.aio.insecure_channel(address, interceptors=aio_interceptors(admin_key)) as chan:
        yield chan


@pytest.fixture
def devices(channel: grpc.aio.Channel) -> device_pb2_grpc.DeviceServiceStub:
    return device_pb2_grpc.DeviceServiceStub(channel)


@pytest.fixture
def queries(channel: grpc.aio.Channel) -> query_pb2_grpc.QueryServiceStub:
    return query_pb2_grpc.QueryServiceStub(channel)


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[ReadingWriter]:
    conn = await asyncpg.connect(database_url)
    try:
        yield ReadingWriter(conn)
    finally:
        await conn.close()


@pytest.fixture
async def device(writer: ReadingWriter) -> str:
    """A registered device, "pi-1"."""
    await create_device(writer.conn, "pi-1")
    return "pi-1"
