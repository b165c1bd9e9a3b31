"""Fixtures for the ingest service: a real server on a free port over a fresh
migrated database, in-memory telemetry, registered devices."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.columnar import columnar_request
from sensormesh_core.storage.registry import create_device
from sensormesh_core.telemetry import Telemetry, configure_telemetry

pytestmark = pytest.mark.storage


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(span_exporter: InMemorySpanExporter, metric_reader: InMemoryMetricReader) -> Telemetry:
    return configure_telemetry(
        "sensormesh-ingest-test",
        span_processor=SimpleSpanProcessor(span_exporter),
        metric_reader=metric_reader,
        set_global=False,
    )


@pytest.fixture
def ingest_settings(database_url: str) -> IngestSettings:
    """Settings for a test server; tests change fields before `ingest` starts it."""
    return IngestSettings(
        database_url=SecretStr(database_url),
        ingest_listen="127.0.0.1:0",
        ingest_notify_window=timedelta(milliseconds=20),
        pool_min_size=1,
        pool_max_size=4,
    )


@pytest.fixture
async def ingest(ingest_settings: IngestSettings, telemetry: Telemetry) -> AsyncIterator[IngestServer]:
    server = await start(ingest_settings, telemetry=telemetry)
    try:
        yield server
    finally:
        await server.stop(grace=5)


@pytest.fixture
async def channel(ingest: IngestServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as opened:
        yield opened


UPLOAD_FORMS = ("rows", "columns")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module that sets `UPLOAD_FORMS = ("rows", "columns")` runs each of its tests
    with batches sent as rows and again with the same batches in columns."""
    forms = getattr(metafunc.module, "UPLOAD_FORMS", None)
    if forms and "upload_form" in metafunc.fixturenames:
        metafunc.parametrize("upload_form", forms, indirect=True)


@pytest.fixture
def upload_form(request: pytest.FixtureRequest) -> str:
    """How the `stub` fixture sends UploadReadings batches: "rows" (as built) or "columns"."""
    return str(getattr(request, "param", "rows"))


class ColumnarStub:
    """An IngestServiceStub whose UploadReadings sends every batch's readings in columns."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def UploadReadings(self, requests: Any, **kwargs: Any) -> Any:
        return self._stub.UploadReadings(_in_columns(requests), **kwargs)


async def _in_columns(requests: Any) -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
    if hasattr(requests, "__aiter__"):
        async for request in requests:
            yield columnar_request(request) if request.readings else request
    else:
        for request in requests:
            yield columnar_request(request) if request.readings else request


@pytest.fixture
def stub(channel: grpc.aio.Channel, upload_form: str) -> ingest_pb2_grpc.IngestServiceStub:
    if upload_form == "columns":
        return ColumnarStub(channel)  # type: ignore[return-value]
    return ingest_pb2_grpc.IngestServiceStub(channel)


@pytest.fixture
async def register(db: asyncpg.Connection) -> Callable[[str], Awaitable[Device]]:
    async def make(device_id: str) -> Device:
        record, token = await create_device(db, device_id)
        return Device(record.device_id, token)

    return make


@pytest.fixture
async def device(register: Callable[[str], Awaitable[Device]]) -> Device:
    return await register("greenhouse-pi-1")


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """ErrorInfo and BadRequest details of a failed call, by message name."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, object] = {}
    for detail in status.details if status else ():
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found[cls.DESCRIPTOR.name] = message
    return found


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations of a failed call: field -> description."""
    bad_request = details(error).get("BadRequest")
    assert isinstance(bad_request, error_details_pb2.BadRequest), f"no BadRequest in {error}"
    return {v.field: v.description for v in bad_request.field_violations}
