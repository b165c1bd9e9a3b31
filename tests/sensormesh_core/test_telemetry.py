"""The server interceptors trace RPCs but leave grpc's health service working."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_core.telemetry import configure_telemetry


class OffsetZero(ingest_pb2_grpc.IngestServiceServicer):
    async def GetUploadOffset(self, request, context):  # type: ignore[no-untyped-def]
        return ingest_pb2.GetUploadOffsetResponse(device_id=request.device_id)


async def test_health_watch_works_and_other_rpcs_are_traced() -> None:
    exporter = InMemorySpanExporter()
    telemetry = configure_telemetry("test", span_processor=SimpleSpanProcessor(exporter), set_global=False)
    server = grpc.aio.server(interceptors=telemetry.server_interceptors())
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(OffsetZero(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await asyncio.wait_for(watch.read(), timeout=5)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            await ingest_pb2_grpc.IngestServiceStub(channel).GetUploadOffset(
                ingest_pb2.GetUploadOffsetRequest(device_id="pi-1")
            )
    finally:
        await server.stop(None)
    names = [span.name for span in exporter.get_finished_spans()]
    assert "/sensormesh.v1.IngestService/GetUploadOffset" in names
    assert not any("grpc.health" in name for name in names)


def test_client_interceptors_only_when_spans_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert configure_telemetry("quiet", set_global=False).client_interceptors() == []
    recorded = configure_telemetry(
        "test", span_processor=SimpleSpanProcessor(InMemorySpanExporter()), set_global=False
    )
    assert recorded.client_interceptors()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    exported = configure_telemetry("otlp", set_global=False)
    try:
        assert exported.recording and exported.client_interceptors()
    finally:
        exported.shutdown()


def test_the_agent_does_not_import_the_grpc_instrumentation_when_nothing_records_spans() -> None:
    """It costs about 2 MiB of the agent's memory budget on a Pi, for spans that go nowhere."""
    program = (
        "import sys\n"
        "from sensormesh_core.telemetry import configure_telemetry\n"
        "telemetry = configure_telemetry('sensormesh-agent', set_global=False)\n"
        "assert telemetry.client_interceptors() == []\n"
        "print('opentelemetry.instrumentation.grpc' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "False"
