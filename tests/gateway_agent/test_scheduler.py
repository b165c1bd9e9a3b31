"""The scheduler: inputs run concurrently on their intervals; failures are isolated, reported, retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sensormesh.v1 import ingest_pb2

from gateway_agent.inputs.simulated import Settings as SimulatedSettings
from gateway_agent.inputs.simulated import Simulated
from gateway_agent.readings import Reading
from gateway_agent.scheduler import Scheduler
from gateway_agent.status import StatusBoard
from sensormesh_core.telemetry import configure_telemetry
from tests.gateway_agent.support import Collector, until

pytestmark = pytest.mark.timeout(30)


class Flaky:
    """A polled input whose source fails while `failing` is set, or hangs while `hanging` is."""

    def __init__(self, name: str, interval: float = 0.01, read_seconds: float = 0.0) -> None:
        self.name = name
        self.read_seconds = read_seconds
        self.interval = timedelta(seconds=interval)
        self.failing = False
        self.hanging = False
        self.opens = 0
        self.inner = Simulated(SimulatedSettings(kind="environment", sensor=name))

    async def open(self) -> None:
        self.opens += 1

    async def read(self) -> Sequence[Reading]:
        if self.hanging:
            await asyncio.Event().wait()
        if self.failing:
            raise OSError(121, "Remote I/O error")
        if self.read_seconds:
            await asyncio.sleep(self.read_seconds)  # a slow bus transaction
        return await self.inner.read()

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def scheduled(scheduler: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(
    inputs: list[Flaky], read_timeout: float = 5.0
) -> tuple[Scheduler, Collector, StatusBoard, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry = configure_telemetry("test", metric_reader=reader, set_global=False)
    collector, board = Collector(), StatusBoard()
    scheduler = Scheduler(
        inputs,
        collector,
        board,
        telemetry.meter("test"),
        retry_initial=0.02,
        retry_max=0.1,
        read_timeout=read_timeout,
    )
    return scheduler, collector, board, reader


def error_count(reader: InMemoryMetricReader, input_name: str) -> int:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "sensormesh.agent.input.errors":
                    return sum(
                        int(p.value)
                        for p in metric.data.data_points
                        if p.attributes.get("input") == input_name
                    )
    return 0


async def test_a_failing_input_is_reported_counted_retried_and_recovers() -> None:
    good, bad = Flaky("good"), Flaky("bad")
    bad.failing = True
    scheduler, collector, board, reader = make([good, bad])
    async with scheduled(scheduler):
        await until(lambda: board.error_count("bad") >= 3)
        _, statuses = board.changed_since(0)
        bad_status = next(s for s in statuses if s.input == "bad")
        assert bad_status.state == ingest_pb2.INPUT_STATE_FAILING
        assert "Remote I/O error" in bad_status.last_error
        assert error_count(reader, "bad") == board.error_count("bad")
        assert bad.opens >= 3  # closed and reopened on every retry: a replugged sensor is re-detected
        bad.failing = False
        await until(lambda: len(collector.readings["bad"]) >= 3)
    _, statuses = board.changed_since(0)
    assert {s.input: s.state for s in statuses} == {
        "bad": ingest_pb2.INPUT_STATE_OK,
        "good": ingest_pb2.INPUT_STATE_OK,
    }


async def test_a_hanging_input_never_delays_the_others() -> None:
    good, stuck = Flaky("good", interval=0.01), Flaky("stuck")
    stuck.hanging = True
    scheduler, collector, board, _ = make([good, stuck], read_timeout=0.3)
    async with scheduled(scheduler):
        await until(lambda: board.error_count("stuck") >= 1)
        # While "stuck" hung for its whole 0.3 s timeout, "good" kept its 10 ms schedule.
        assert len(collector.readings["good"]) >= 10
    _, statuses = board.changed_since(0)
    assert "TimeoutError" in next(s for s in statuses if s.input == "stuck").last_error


async def test_polled_input_keeps_its_interval_on_a_fixed_grid() -> None:
    sensor = Flaky("steady", interval=0.04, read_seconds=0.02)
    scheduler, collector, _, _ = make([sensor])
    async with scheduled(scheduler):
        await until(lambda: len(collector.times["steady"]) >= 11)
    times = collector.times["steady"]
    # 10 intervals of 40 ms: 0.4 s on the grid; sleeping an interval after each 20 ms read would take 0.6 s.
    assert 0.35 < times[10] - times[0] < 0.52
