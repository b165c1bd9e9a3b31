"""One trace covers a reading's trip: the agent's upload stream and batch (the real uplink
and buffer), its gRPC call, the ingest service's call and batch, and the database statements
that stored it (the real service on a real PostgreSQL), each exported by its own process's
telemetry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway_agent.buffer import Buffer, BufferSettings, Record
from gateway_agent.channel import open_channel
from gateway_agent.readings import imu
from gateway_agent.status import StatusBoard
from gateway_agent.uplink import Uplink, UplinkSettings
from ingest_service.server import IngestServer
from sensormesh_core.telemetry import configure_telemetry
from tests.gateway_agent.support import until
from tests.ingest_service.conftest import Device

pytestmark = pytest.mark.storage

UPLOAD = "/sensormesh.v1.IngestService/UploadReadings"
READINGS = 200


async def _upload_through_the_agents_uplink(
    ingest: IngestServer, device: Device, agent_spans: InMemorySpanExporter, folder: Path
) -> None:
    agent = configure_telemetry(
        "sensormesh-agent-test", span_processor=SimpleSpanProcessor(agent_spans), set_global=False
    )
    buffer = await Buffer.open(BufferSettings(path=folder / "buffer.sqlite3", commit_interval=timedelta(0)))
    now = time.time_ns()
    taken = [imu("mpu", now - (READINGS - i) * 10_000_000, (float(i), 0.0, 9.8), (0.0, 0.0, 0.0)) for i in range(READINGS)]  # fmt: skip
    buffer.add(Record(r.sensor, r.sample_time.ToNanoseconds(), r.SerializeToString()) for r in taken)
    target = f"127.0.0.1:{ingest.port}"
    settings = UplinkSettings(target=target, tls=False, batch_max_readings=100, stream_max_batches=2)
    channel = open_channel(target, tls=False, interceptors=agent.client_interceptors())
    uplink = Uplink(
        settings, device.device_id, device.token, buffer, StatusBoard(), channel,
        agent.tracer("gateway_agent"), agent.meter("gateway_agent"),
    )  # fmt: skip
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.committed == READINGS, seconds=30)
    finally:
        uplink.stop()
        await asyncio.wait_for(task, 30)
        await channel.close()
        await buffer.close()
        agent.shutdown()


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_an_agent_upload_is_one_trace_from_its_stream_to_the_copy_that_stored_it(
    ingest: IngestServer, device: Device, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    agent_spans = InMemorySpanExporter()
    await _upload_through_the_agents_uplink(ingest, device, agent_spans, tmp_path)

    agent = agent_spans.get_finished_spans()
    stream = next(s for s in agent if s.name == "upload stream")
    trace_id = stream.context.trace_id
    (client,) = [s for s in agent if s.name == UPLOAD and s.context.trace_id == trace_id]
    assert client.kind is SpanKind.CLIENT and _parent(client) == stream.context.span_id
    # The batches are built while the call's request iterator runs: inside the call's span.
    agent_batches = [s for s in agent if s.name == "upload batch" and _parent(s) == client.context.span_id]
    assert [b.attributes["sensormesh.readings"] for b in agent_batches] == [100, 100]  # type: ignore[index]

    service = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]
    (server,) = [s for s in service if s.name == UPLOAD]
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None and server.parent.is_remote and _parent(server) == client.context.span_id
    ingest_batches = [s for s in service if s.name == "ingest batch"]
    assert len(ingest_batches) == 2 and all(_parent(b) == server.context.span_id for b in ingest_batches)
    groups = [s for s in service if s.name == "commit group"]  # a stream's batches commit one at a time
    assert {_parent(g) for g in groups} == {b.context.span_id for b in ingest_batches}
    copies = [s for s in service if s.name == "COPY imu_readings"]
    assert {_parent(c) for c in copies} == {g.context.span_id for g in groups}
    assert sum(c.attributes["db.rows"] for c in copies) == READINGS  # type: ignore[misc]
