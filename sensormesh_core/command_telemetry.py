"""Commands' metrics and their trace across processes.

Metrics (Prometheus shows them with `_` for `.`), recorded by whichever
process made the transition (the control service: queued, canceled,
expired, timed out; ingest: sent, delivered, succeeded, failed):

- `sensormesh.commands.transitions` (counter, {command}): by `state`.
- `sensormesh.commands.delivery_latency` (histogram, s): from SendCommand to
  the device's receipt (DELIVERED).
- `sensormesh.commands.round_trip` (histogram, s): from SendCommand to the
  device's result (SUCCEEDED or FAILED).

One trace runs from SendCommand through delivery to the result, although a
database row, not a call, carries the command between processes: SendCommand
stores its W3C `traceparent` with the command, and the ingest process that
offers the command and takes its result starts its spans as children of it.
"""

from __future__ import annotations

from datetime import datetime

from opentelemetry import context, metrics
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sensormesh_core.command_states import DELIVERED, STATE_NAMES

_PROPAGATOR = TraceContextTextMapPropagator()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def current_trace_context() -> str:
    """The current span's `traceparent`, or "" when none is recording."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def parent_context(traceparent: str) -> context.Context | None:
    """A context whose span is the one `traceparent` names (None for "")."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None


class CommandMetrics:
    """The instruments; one per process."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._transitions = meter.create_counter(
            "sensormesh.commands.transitions",
            unit="{command}",
            description="Command state changes, by state.",
        )
        self._delivery = meter.create_histogram(
            "sensormesh.commands.delivery_latency",
            unit="s",
            description="From SendCommand to the device's receipt.",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )
        self._round_trip = meter.create_histogram(
            "sensormesh.commands.round_trip",
            unit="s",
            description="From SendCommand to the device's result.",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )

    def transition(self, state: int) -> None:
        self._transitions.add(1, {"state": STATE_NAMES.get(state, str(state))})

    def delivered(self, created: datetime, delivered: datetime) -> None:
        self.transition(DELIVERED)
        self._delivery.record(max((delivered - created).total_seconds(), 0.0))

    def finished(self, state: int, created: datetime, finished: datetime) -> None:
        self.transition(state)
        self._round_trip.record(max((finished - created).total_seconds(), 0.0), {"state": STATE_NAMES[state]})
