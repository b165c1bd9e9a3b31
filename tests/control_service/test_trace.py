"""One trace from SendCommand through the offer and the receipt to the result, across two processes'
telemetry, although a database row carries the command between them."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sensormesh.v1 import command_pb2_grpc

from control_service.server import start_control_server
from ingest_service.server import start
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.telemetry import configure_telemetry
from tests.control_service.commands_api import send
from tests.control_service.conftest import Device, control_settings, ingest_settings
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage


async def test_the_command_keeps_one_trace_and_its_metrics_count_each_step(
    database_url: str, device: Device, operator_key: str
) -> None:
    spans = {name: InMemorySpanExporter() for name in ("control", "ingest")}
    readers = {name: InMemoryMetricReader() for name in ("control", "ingest")}
    telemetry = {
        name: configure_telemetry(
            f"sensormesh-{name}",
            span_processor=SimpleSpanProcessor(spans[name]),
            metric_reader=readers[name],
            set_global=False,
        )
        for name in spans
    }
    control = await start_control_server(
        control_settings(database_url), database_url=database_url, telemetry=telemetry["control"]
    )
    ingest = await start(ingest_settings(database_url), telemetry=telemetry["ingest"])
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{control.port}", interceptors=aio_interceptors(operator_key)
            ) as to_control,
        ):
            connected = await DeviceChannel.open(to_ingest, device.device_id, device.token)
            await connected.expect("opened")
            sent = await send(command_pb2_grpc.CommandServiceStub(to_control), device.device_id, "ping")
            offered = await connected.expect("command")
            connected.receipt(offered.command_id)
            await connected.expect("run")
            connected.result(offered.command_id, agent_time="now")
            await connected.expect("result_stored")
            connected.cancel()
    finally:
        await ingest.stop(grace=1)
        await control.stop(0.5)

    (send_span,) = [s for s in spans["control"].get_finished_spans() if s.name.endswith("SendCommand")]
    steps = {
        s.name: s
        for s in spans["ingest"].get_finished_spans()
        if s.name in ("command offered", "command delivered", "command result")
    }
    assert set(steps) == {"command offered", "command delivered", "command result"}
    for span in steps.values():
        assert span.context.trace_id == send_span.context.trace_id
        assert span.parent is not None and span.parent.span_id == send_span.context.span_id
        assert span.attributes["sensormesh.command_id"] == sent.command_id

    def counted(reader: InMemoryMetricReader, name: str) -> dict[str, int]:
        data = reader.get_metrics_data()
        found: dict[str, int] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            state = str(point.attributes.get("state", ""))
                            found[state] = found.get(state, 0) + int(
                                getattr(point, "value", getattr(point, "count", 0))
                            )
        return found

    assert counted(readers["control"], "sensormesh.commands.transitions") == {"QUEUED": 1}
    assert counted(readers["ingest"], "sensormesh.commands.transitions") == {
        "SENT": 1,
        "DELIVERED": 1,
        "SUCCEEDED": 1,
    }
    assert counted(readers["ingest"], "sensormesh.commands.delivery_latency") == {"": 1}
    assert counted(readers["ingest"], "sensormesh.commands.round_trip") == {"SUCCEEDED": 1}
