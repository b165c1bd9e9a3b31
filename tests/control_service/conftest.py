"""Real control and ingest services over one fresh database, an operator key and devices.

The device's side of commands is played by hand (tests/support/command_device.py)
against the real ingest service; the operator's side calls the real control
service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import grpc
import pytest
from pydantic import SecretStr
from sensormesh.v1 import command_pb2_grpc

from control_service.server import ControlServer, start_control_server
from control_service.settings import ControlSettings
from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage.registry import create_device
from tests.support.access import make_key
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str


def control_settings(database_url: str, **overrides: object) -> ControlSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "control_listen": "127.0.0.1:0",
        "pool_min_size": 1,
        "pool_max_size": 4,
        "command_sweep_interval": timedelta(milliseconds=100),
    }
    values.update(overrides)
    return ControlSettings(**values)  # type: ignore[arg-type]


def ingest_settings(database_url: str, **overrides: object) -> IngestSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "ingest_listen": "127.0.0.1:0",
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    values.update(overrides)
    return IngestSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def control(database_url: str) -> AsyncIterator[ControlServer]:
    server = await start_control_server(control_settings(database_url), database_url=database_url)
    try:
        yield server
    finally:
        await server.stop(0.5)


@pytest.fixture
async def ingest(database_url: str) -> AsyncIterator[IngestServer]:
    server = await start(ingest_settings(database_url))
    try:
        yield server
    finally:
        await server.stop(grace=1)


@pytest.fixture
async def operator_key(database_url: str) -> str:
    return await make_key(database_url, "test-admin")


@pytest.fixture
async def commands_stub(
    control: ControlServer, operator_key: str
) -> AsyncIterator[command_pb2_grpc.CommandServiceStub]:
    address = f"127.0.0.1:{control.port}"
    async with grpc.aio.insecure_channel(address, interceptors=aio_interceptors(operator_key)) as channel:
        yield command_pb2_grpc.CommandServiceStub(channel)


@pytest.fixture
async def register(db: asyncpg.Connection) -> Callable[[str], Awaitable[Device]]:
    async def make(device_id: str) -> Device:
        record, token = await create_device(db, device_id)
        return Device(record.device_id, token)

    return make


@pytest.fixture
async def device(register: Callable[[str], Awaitable[Device]]) -> Device:
    return await register("greenhouse-pi")


@pytest.fixture
async def device_channel(ingest: IngestServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        yield channel


@pytest.fixture
async def connected(device_channel: grpc.aio.Channel, device: Device) -> AsyncIterator[DeviceChannel]:
    """The device's command channel, open and acknowledged."""
    opened = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await opened.expect("opened")
    try:
        yield opened
    finally:
        opened.cancel()
