"""Fixtures for the agent: in-memory ingest and command doubles on real gRPC servers, buffers,
command links, telemetry."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway_agent.buffer import Buffer, BufferSettings, Record
from gateway_agent.channel import open_channel
from gateway_agent.commands.base import CommandHandler
from gateway_agent.commands.journal import CommandJournal
from gateway_agent.commands.link import CommandLink, LinkTiming
from gateway_agent.commands.store import StateStore
from gateway_agent.status import StatusBoard
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink import Uplink, UplinkSettings
from sensormesh_core.telemetry import Telemetry, configure_telemetry
from tests.gateway_agent.command_double import CommandDouble
from tests.gateway_agent.command_double import serve as serve_commands
from tests.gateway_agent.ingest_double import IngestDouble, serve
from tests.gateway_agent.mosquitto import Broker, free_port, start_mosquitto, wait_listening

DEVICE_ID = "test-pi-1"
TOKEN = "sm_test_token"


@dataclass
class Ingest:
    servicer: IngestDouble
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def restart(self) -> None:
        """Stop the server abruptly and serve the same state again on the same port."""
        await self.server.stop(grace=None)
        self.server, _ = await serve(self.servicer, self.port)


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    servicer = IngestDouble(DEVICE_ID, TOKEN)
    server, port = await serve(servicer)
    handle = Ingest(servicer, server, port)
    try:
        yield handle
    finally:
        await handle.server.stop(grace=None)


@pytest.fixture
def telemetry() -> tuple[Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    return configure_telemetry(
        "test-agent", span_processor=SimpleSpanProcessor(exporter), set_global=False
    ), exporter


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = await Buffer.open(
        BufferSettings(path=tmp_path / "buffer.sqlite3", commit_interval=timedelta(milliseconds=20))
    )
    try:
        yield buf
    finally:
        await buf.close()


FAST_UPLINK = UplinkSettings(
    tls=False,
    batch_max_readings=500,
    batch_max_age=timedelta(milliseconds=50),
    stream_max_batches=4,
    stream_max_duration=timedelta(seconds=2),
    ack_timeout=timedelta(seconds=5),
    backoff_initial=timedelta(milliseconds=20),
    backoff_max=timedelta(milliseconds=200),
)

UplinkFactory = Callable[..., Uplink]


@pytest.fixture
async def make_uplink(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> AsyncIterator[UplinkFactory]:
    channels: list[grpc.aio.Channel] = []

    def make(target: str, buffer: Buffer, statuses: StatusBoard | None = None, **overrides: Any) -> Uplink:
        token = overrides.pop("token", TOKEN)
        settings = msgspec.structs.replace(FAST_UPLINK, target=target, **overrides)
        channel = open_channel(
            target, tls=settings.tls, ca_file=settings.ca_file, gzip=settings.gzip,
            interceptors=telemetry[0].client_interceptors(),
        )  # fmt: skip
        channels.append(channel)
        tel = telemetry[0]
        return Uplink(
            settings, DEVICE_ID, token, buffer, statuses or StatusBoard(), channel,
            tel.tracer("gateway_agent"), tel.meter("gateway_agent"),
        )  # fmt: skip

    yield make
    for channel in channels:
        await channel.close()


def imu_records(start: int, count: int) -> list[Record]:
    """Encoded IMU readings numbered by their index (in acceleration_x) and spaced 10 ms."""
    from gateway_agent.readings import imu

    out = []
    for i in range(start, start + count):
        reading = imu("imu-1", 1_767_225_600 * 10**9 + i * 10_000_000, (float(i), 0.0, 9.8), (0.0, 0.0, 0.0))
        out.append(Record(reading.sensor, reading.sample_time.ToNanoseconds(), reading.SerializeToString()))
    return out


@dataclass
class CommandService:
    """The command double, with the ingest double on the same port (as ingest serves both)."""

    servicer: CommandDouble
    ingest: IngestDouble
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def restart(self) -> None:
        """Stop the server abruptly and serve the same state again on the same port."""
        await self.server.stop(grace=None)
        self.server, _ = await serve_commands(self.servicer, self.ingest, self.port)


@pytest.fixture
async def command_service() -> AsyncIterator[CommandService]:
    servicer, ingest = CommandDouble(DEVICE_ID, TOKEN), IngestDouble(DEVICE_ID, TOKEN)
    server, port = await serve_commands(servicer, ingest)
    handle = CommandService(servicer, ingest, server, port)
    try:
        yield handle
    finally:
        await handle.server.stop(grace=None)


FAST_LINK = LinkTiming(
    backoff_initial=0.02, backoff_max=0.2, refused_backoff_initial=0.05, refused_backoff_max=0.3
)
LinkFactory = Callable[..., Awaitable[CommandLink]]


@pytest.fixture
async def make_link(
    telemetry: tuple[Telemetry, InMemorySpanExporter], tmp_path: Path
) -> AsyncIterator[LinkFactory]:
    """Links on a journal in `tmp_path/buffer.sqlite3` (the same file for every link of a test,
    so a second link is the first one restarted)."""
    stores: list[StateStore] = []
    channels: list[grpc.aio.Channel] = []

    async def make(
        target: str, handlers: Sequence[CommandHandler], token: str | TokenSource = TOKEN
    ) -> CommandLink:
        store = await StateStore.open(tmp_path / "buffer.sqlite3")
        stores.append(store)
        channel = open_channel(target, tls=False, interceptors=telemetry[0].client_interceptors())
        channels.append(channel)
        tel = telemetry[0]
        return CommandLink(
            DEVICE_ID, token if isinstance(token, TokenSource) else TokenSource(token), channel,
            await CommandJournal.open(store), handlers, tel.tracer("gateway_agent"),
            tel.meter("gateway_agent"), FAST_LINK,
        )  # fmt: skip

    yield make
    for channel in channels:
        await channel.close()
    for store in stores:
        await store.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Our own Mosquitto on a free port, or the machine's on 1883 when the binary is not on PATH."""
    if shutil.which("mosquitto") is None:
        try:
            wait_listening(1883, seconds=1)
        except TimeoutError:
            pytest.skip("neither a mosquitto binary on PATH nor a broker on 127.0.0.1:1883")
        yield Broker("127.0.0.1", 1883, None)
        return
    port = free_port()
    handle = Broker("127.0.0.1", port, start_mosquitto(tmp_path, port))
    try:
        yield handle
    finally:
        if handle.process is not None:
            handle.process.kill()
            handle.process.wait(timeout=10)
