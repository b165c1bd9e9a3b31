"""OpenTelemetry for every sensormesh program: traces and metrics.

Export follows the standard `OTEL_*` variables: with
`OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal variants) set, spans and
metrics go to that collector over OTLP/gRPC. With nothing exporting, a
program gets the OpenTelemetry API's no-op providers: what it would record
would be dropped anyway, so it neither imports the SDK (about 3 MiB with its
resource detection and psutil, which matters on the agent's Pi) nor pays for
spans per call (the ingest service spent about 0.3 us of CPU a reading
creating, filling and ending spans that went nowhere). The no-op tracer still
hands the caller's trace context on (its spans carry their parent's ids), so
a command's stored `traceparent` and a downstream exporter's traces stay
joined. Tests pass their own in-memory exporter and reader instead.

gRPC context propagation uses the instrumentation's interceptors, attached
explicitly to each server and channel (no global monkeypatching), so a trace
started by the agent continues in ingest and down to the database write. A
program whose spans go nowhere gets no client interceptors: the agent on a Pi
then neither imports the instrumentation (about 2 MiB of its 60 MB budget) nor
pays for it per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import metrics, trace

from sensormesh_core import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

_OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_OTLP_METRICS_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


@dataclass
class Telemetry:
    """The providers of one program; pass them down instead of using globals."""

    tracer_provider: trace.TracerProvider  # the SDK's, or the API's no-op one (see configure_telemetry)
    meter_provider: metrics.MeterProvider
    recording: bool = True  # spans reach an exporter or a processor (else they are dropped)

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name, __version__)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name, __version__)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Interceptors that start a server span from the caller's trace context.

        Health checks are left out: probes every few seconds are noise in a
        trace store, and the instrumentation's aio wrapper only understands
        streaming handlers written as async generators, which grpc's own
        Health.Watch is not (it would fail every Watch).
        """
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        not_health = filters.negate(filters.health_check())
        return [aio_server_interceptor(tracer_provider=self.tracer_provider, filter_=not_health)]  # type: ignore[no-untyped-call]

    def client_interceptors(self) -> list[Any]:
        """Interceptors that start a client span and send its context as metadata; none when
        spans are not recorded (there would be no trace to continue)."""
        if not self.recording:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(tracer_provider=self.tracer_provider))  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Flush and stop exporting; call once at exit. (The API's no-op providers have nothing
        to flush and no `shutdown`.)"""
        for provider in (self.tracer_provider, self.meter_provider):
            shutdown = getattr(provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def _configured(variables: tuple[str, ...]) -> bool:
    return any(os.environ.get(name) for name in variables)


def configure_telemetry(
    service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    metric_reader: MetricReader | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Build the providers for `service_name` (e.g. "sensormesh-ingest").

    With `set_global`, also install them as OpenTelemetry's globals so that
    libraries instrumented against the global API (asyncpg) report into them.
    A program that neither exports nor was handed an exporter, processor or
    reader gets the API's no-op providers (see the module's docstring).
    """
    exporting = _configured(_OTLP_ENDPOINT_VARIABLES) or _configured(_OTLP_METRICS_VARIABLES)
    handed = span_exporter is not None or span_processor is not None or metric_reader is not None
    if not exporting and not handed:
        telemetry = Telemetry(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider(), recording=False)
    else:
        telemetry = _sdk_telemetry(service_name, span_exporter, span_processor, metric_reader)
    if set_global:
        trace.set_tracer_provider(telemetry.tracer_provider)
        metrics.set_meter_provider(telemetry.meter_provider)
    return telemetry


def _sdk_telemetry(
    service_name: str,
    span_exporter: SpanExporter | None,
    span_processor: SpanProcessor | None,
    metric_reader: MetricReader | None,
) -> Telemetry:
    """The SDK's providers, exporting over OTLP when the `OTEL_*` variables say so."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: __version__})
    tracer_provider = TracerProvider(resource=resource)
    recording = span_processor is not None or span_exporter is not None
    if span_processor is not None:
        tracer_provider.add_span_processor(span_processor)
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    elif span_processor is None and _configured(_OTLP_ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        recording = True

    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    elif _configured(_OTLP_METRICS_VARIABLES):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, recording=recording)
