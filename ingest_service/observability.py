"""The ingest service's metrics, and asyncpg's spans under each batch span.

Metrics (OpenTelemetry names; Prometheus shows them with `_` for `.`):

- `sensormesh.ingest.readings` (counter, {reading}): by `outcome` =
  accepted | rejected | duplicate.
- `sensormesh.ingest.batch.duration` (histogram, s): prepare + commit of one
  batch, by `rpc`.
- `sensormesh.ingest.streams.active` (up-down counter): open UploadReadings
  streams, and UploadFrames ones with `rpc` = UploadFrames.
- `sensormesh.ingest.sequence_gaps` (counter): batches that started past
  mark + 1 (readings the device never sent; the mark moves past them).
- `sensormesh.ingest.frames` (counter, {frame}): camera frames received, by
  `outcome` = accepted | refused | duplicate; `sensormesh.ingest.frame_bytes`
  (counter, By): image bytes stored.
- `sensormesh.ingest.frames.paced` (counter, s): time frame streams were held
  back by the per-device frame rate.
"""

from __future__ import annotations

import logging

from opentelemetry import metrics
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.trace import TracerProvider

log = logging.getLogger(__name__)

# Batch latency buckets (seconds): a 1,000-reading batch commits in a few ms.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """The instruments, created once per service."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.readings = meter.create_counter(
            "sensormesh.ingest.readings", unit="{reading}", description="Readings received, by outcome."
        )
        self.batch_duration = meter.create_histogram(
            "sensormesh.ingest.batch.duration",
            unit="s",
            description="Time to prepare and commit one batch.",
            explicit_bucket_boundaries_advisory=list(BATCH_BUCKETS),
        )
        self.active_streams = meter.create_up_down_counter(
            "sensormesh.ingest.streams.active",
            unit="{stream}",
            description="Open upload streams (UploadFrames ones with rpc=UploadFrames).",
        )
        self.sequence_gaps = meter.create_counter(
            "sensormesh.ingest.sequence_gaps",
            unit="{batch}",
            description="Batches that began after the device's mark + 1.",
        )

        self.frames = meter.create_counter(
            "sensormesh.ingest.frames", unit="{frame}", description="Camera frames received, by outcome."
        )
        self.frame_bytes = meter.create_counter(
            "sensormesh.ingest.frame_bytes", unit="By", description="Image bytes of the frames stored."
        )
        self.frames_paced = meter.create_counter(
            "sensormesh.ingest.frames.paced",
            unit="s",
            description="Time frame streams waited for the per-device frame rate.",
        )

    def record_frames(self, accepted: int, refused: int, duplicates: int, stored_bytes: int) -> None:
        for outcome, count in (("accepted", accepted), ("refused", refused), ("duplicate", duplicates)):
            if count:
                self.frames.add(count, {"outcome": outcome})
        if stored_bytes:
            self.frame_bytes.add(stored_bytes)

    def record_batch(self, rpc: str, accepted: int, rejected: int, duplicates: int, *seconds: float) -> None:
        """One commit's readings by outcome, and each of its batches' time from arrival to commit
        (more than one when a stream's batches were joined, upload.py)."""
        self.readings.add(accepted, {"outcome": "accepted"})
        if rejected:
            self.readings.add(rejected, {"outcome": "rejected"})
        if duplicates:
            self.readings.add(duplicates, {"outcome": "duplicate"})
        for duration in seconds:
            self.batch_duration.record(duration, {"rpc": rpc})


_instrumented_with: list[TracerProvider | None] = []


def instrument_asyncpg(tracer_provider: TracerProvider, *, recording: bool = True) -> None:
    """Report asyncpg queries as spans of `tracer_provider`; when its spans are
    not `recording` (nothing exports them), leave asyncpg unpatched: a wrapper
    around every statement for spans that go nowhere.

    The instrumentation patches asyncpg's classes, so it is process-wide: the
    provider of the service started last wins (one per process in production;
    in tests, the service under test).
    """
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    wanted = tracer_provider if recording else None
    if _instrumented_with == [wanted]:
        return
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if wanted is not None:
        instrumentor.instrument(tracer_provider=wanted)
    _instrumented_with[:] = [wanted]
