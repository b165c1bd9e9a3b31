"""One trace from the caller through the batch to the database, and the
service's metrics."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sensormesh.v1 import ingest_pb2_grpc

from ingest_service.server import IngestServer
from sensormesh_core.columnar import columnar_request
from sensormesh_core.telemetry import configure_telemetry
from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import batch, batches, stream

pytestmark = pytest.mark.storage


@pytest.mark.parametrize("form", ["rows", "columns"])
async def test_a_batch_span_joins_the_callers_trace_and_parents_the_database_spans(
    ingest: IngestServer, device: Device, span_exporter: InMemorySpanExporter, form: str
) -> None:
    agent_spans = InMemorySpanExporter()
    agent = configure_telemetry(
        "agent-test", span_processor=SimpleSpanProcessor(agent_spans), set_global=False
    )
    bad = batch(device.device_id, 1, 100)
    bad.readings[7].reading.imu.acceleration_x_mps2 = math.nan
    if form == "columns":
        bad = columnar_request(bad)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{ingest.port}", interceptors=agent.client_interceptors()
    ) as channel:
        with agent.tracer("agent").start_as_current_span("upload backlog") as root:
            await ingest_pb2_grpc.IngestServiceStub(channel).UploadReadings(
                stream([bad]), metadata=device.metadata
            )

    trace_id = root.get_span_context().trace_id
    spans = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in spans}
    server = by_name["/sensormesh.v1.IngestService/UploadReadings"]
    batch_span = by_name["ingest batch"]
    assert _parent(batch_span) == server.context.span_id
    assert server.parent is not None and server.parent.is_remote  # from the caller, via metadata
    attributes = dict(batch_span.attributes or {})
    assert attributes["sensormesh.device_id"] == device.device_id
    assert attributes["sensormesh.batch.readings"] == 100
    assert attributes["sensormesh.batch.rows_written"] == 99
    assert attributes["sensormesh.batch.rejected"] == 1
    group = by_name["commit group"]  # the transaction, alone in it: the batch's child
    assert _parent(group) == batch_span.context.span_id
    assert [link.context.span_id for link in group.links] == [batch_span.context.span_id]
    children = {s.name for s in spans if _parent(s) == group.context.span_id}
    assert "COPY imu_readings" in children
    assert {
        "BEGIN;",
        "WITH",
        "COMMIT;",
    } <= children  # asyncpg's spans (the record, and the lock behind the rollup gate, are WITH)
    database = by_name["COPY imu_readings"]
    assert (database.attributes or {})["db.rows"] == 95  # 100 - 2 environment - 2 measurement - 1 refused


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_metrics_count_readings_batches_and_streams(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, metric_reader: InMemoryMetricReader
) -> None:
    upload = batches(device.device_id, 1, 300, 100)
    upload[1].readings[0].reading.ClearField("sample_time")
    await stub.UploadReadings(stream(upload), metadata=device.metadata)
    await stub.UploadReadings(stream(upload[:1]), metadata=device.metadata)

    readings = {
        dict(p.attributes)["outcome"]: p.value for p in _points(metric_reader, "sensormesh.ingest.readings")
    }
    assert readings == {"accepted": 299, "rejected": 1, "duplicate": 100}
    durations = _points(metric_reader, "sensormesh.ingest.batch.duration")
    assert sum(p.count for p in durations) == 4 and all(p.sum > 0 for p in durations)
    assert [p.value for p in _points(metric_reader, "sensormesh.ingest.streams.active")] == [0]
