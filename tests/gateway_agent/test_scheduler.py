"""The scheduler: inputs run concurrently on their intervals; failures are isolated, reported, retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sensormesh.v1 import ingest_pb2

from gateway_agent.inputs.simulated import Settings as SimulatedSettings
from gateway_agent.inputs.simulated import Simulated
from gateway_agent.readings import Reading
from gateway_agent.scheduler import ControlError, Scheduler
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


class Counted(Flaky):
    """Flaky, counting closes too."""

    def __init__(self, name: str, interval: float = 0.01) -> None:
        super().__init__(name, interval)
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


class Pushing:
    """A streaming input that connects and waits."""

    name = "pushing"

    async def stream(self, emit: Callable[[Sequence[Reading]], None]) -> None:
        emit([])
        await asyncio.Event().wait()


async def test_a_new_interval_takes_effect_at_once_not_after_the_old_one() -> None:
    hourly = Counted("hourly", interval=3600)
    scheduler, collector, _, _ = make([hourly])
    async with scheduled(scheduler):
        await until(lambda: len(collector.readings["hourly"]) == 1)
        assert scheduler.set_interval("hourly", 0.01) == 3600
        await until(lambda: len(collector.readings["hourly"]) >= 10)
        assert scheduler.set_interval("hourly", 3600) == 0.01
    assert [(i.name, i.interval_seconds) for i in scheduler.runtime()] == [("hourly", 3600)]


async def test_a_disabled_input_stops_and_closes_and_starts_again_when_enabled() -> None:
    item, other = Counted("item"), Counted("other")
    scheduler, collector, _, _ = make([item, other])
    assert await scheduler.set_enabled("other", False) is True  # before run(): never started
    async with scheduled(scheduler):
        await until(lambda: len(collector.readings["item"]) >= 3)
        assert await scheduler.set_enabled("item", False) is True
        assert item.closes == 1
        stopped = len(collector.readings["item"])
        assert await scheduler.set_enabled("other", True) is False
        await until(lambda: len(collector.readings["other"]) >= 5)
        assert len(collector.readings["item"]) == stopped
        await scheduler.set_enabled("item", True)
        await until(lambda: len(collector.readings["item"]) >= stopped + 3)
    assert item.opens == 2  # reopened when enabled again
    assert [i.enabled for i in scheduler.runtime()] == [True, True]


async def test_read_now_reads_between_ticks_and_refuses_what_it_cannot_read() -> None:
    hourly, pushing = Counted("hourly", interval=3600), Pushing()
    scheduler, collector, board, _ = make([hourly, pushing])  # type: ignore[list-item]
    async with scheduled(scheduler):
        await until(lambda: len(collector.readings["hourly"]) == 1)
        assert await scheduler.read_now("hourly") == 1
        assert len(collector.readings["hourly"]) == 2
        with pytest.raises(ControlError, match="streaming input"):
            await scheduler.read_now("pushing")
        with pytest.raises(ControlError, match="no input named 'nope'; configured: hourly, pushing"):
            await scheduler.read_now("nope")
        hourly.failing = True
        with pytest.raises(ControlError, match="reading hourly failed: OSError"):
            await scheduler.read_now("hourly")
        assert board.error_count("hourly") == 1
        await scheduler.set_enabled("hourly", False)
        with pytest.raises(ControlError, match="hourly is disabled"):
            await scheduler.read_now("hourly")
