"""Runs every input on its own schedule, concurrently, and isolates their failures.

Each input gets its own task. A polled input is read every `interval` on a
fixed grid (a slow read does not shift later samples; missed ticks are
skipped, not bunched up). A failure of any kind is logged, counted in the
`sensormesh.agent.input.errors` metric, recorded on the status board (sent to
the server with the next batch) and retried with exponential backoff after
closing and reopening the input, so an unplugged sensor is re-detected. One
input failing or hanging never delays the others: blocking drivers run in
worker threads, and every read has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from opentelemetry import metrics

from gateway_agent.backoff import Backoff
from gateway_agent.buffer import Buffer, Record
from gateway_agent.inputs.base import Input, InputError, PolledInput, StreamingInput
from gateway_agent.readings import Reading, sample_time_ns
from gateway_agent.status import StatusBoard

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the scheduler hands readings."""

    def emit(self, input_name: str, readings: Sequence[Reading]) -> None: ...


class ReadingSink:
    """The agent's sink: readings encoded once, into the buffer's next group commit.

    Counts are plain integers reported through an observable counter: at 100 Hz a
    synchronous `Counter.add` (attribute checks, aggregation) would cost more than the reading.
    """

    def __init__(self, buffer: Buffer, meter: metrics.Meter) -> None:
        self._buffer = buffer
        self.taken: dict[str, int] = {}
        meter.create_observable_counter(
            "sensormesh.agent.readings.taken",
            callbacks=[self._observe],
            unit="{reading}",
            description="Readings handed to the buffer, by input.",
        )
        meter.create_observable_counter(
            "sensormesh.agent.readings.discarded",
            callbacks=[self._observe_discarded],
            unit="{reading}",
            description="Readings the buffer discarded, by reason (reported upstream as thinned).",
        )

    def _observe(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(count, {"input": name}) for name, count in self.taken.items()]

    def _observe_discarded(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [
            metrics.Observation(self._buffer.thinned_total, {"reason": "disk_budget"}),
            metrics.Observation(self._buffer.dropped_in_memory, {"reason": "disk_stalled"}),
        ]

    def emit(self, input_name: str, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        self._buffer.add([Record(r.sensor, sample_time_ns(r), r.SerializeToString()) for r in readings])
        self.taken[input_name] = self.taken.get(input_name, 0) + len(readings)


class Scheduler:
    """Owns the input tasks; `await run()` until cancelled."""

    def __init__(
        self,
        inputs: Sequence[Input],
        sink: Sink,
        statuses: StatusBoard,
        meter: metrics.Meter,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        read_timeout: float = 10.0,
    ) -> None:
        self.inputs = list(inputs)
        self._sink = sink
        self._statuses = statuses
        self._errors = meter.create_counter(
            "sensormesh.agent.input.errors", unit="{error}", description="Failed reads, by input."
        )
        self._retry = (retry_initial, retry_max)
        self._read_timeout = read_timeout

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._run_one(i), name=f"input:{i.name}") for i in self.inputs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_one(self, item: Input) -> None:
        if isinstance(item, StreamingInput):
            await self._run_streaming(item)
        else:
            await self._run_polled(item)

    def _failed(self, name: str, error: BaseException, backoff: Backoff) -> float:
        delay = backoff.next_delay()
        message = str(error) or type(error).__name__
        self._statuses.failed(name, f"{type(error).__name__}: {message}")
        self._errors.add(1, {"input": name})
        log.warning(
            "event=input_failed input=%s error_type=%s error=%r error_count=%d retry_in_seconds=%.1f",
            name, type(error).__name__, message, self._statuses.error_count(name), delay,
        )  # fmt: skip
        return delay

    async def _run_polled(self, item: PolledInput) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._retry)
        interval = item.interval.total_seconds()
        timeout = max(self._read_timeout, interval)
        opened = False
        next_at = loop.time()
        while True:
            try:
                async with asyncio.timeout(timeout):
                    if not opened:
                        await item.open()
                        opened = True
                    readings = await item.read()
            except Exception as error:  # drivers raise what their source raises; reported here, once
                delay = self._failed(item.name, error, backoff)
                if opened:
                    opened = False
                    with contextlib.suppress(Exception):
                        await item.close()
                await asyncio.sleep(delay)
                next_at = loop.time()
                continue
            backoff.reset()
            self._statuses.succeeded(item.name)
            self._sink.emit(item.name, readings)
            next_at += interval
            now = loop.time()
            if next_at < now:  # fell behind: skip the missed ticks rather than bunch reads up
                next_at += ((now - next_at) // interval + 1) * interval
            await asyncio.sleep(next_at - now)

    async def _run_streaming(self, item: StreamingInput) -> None:
        backoff = Backoff(*self._retry)
        while True:
            connected = False

            def emit(readings: Sequence[Reading]) -> None:
                nonlocal connected
                if not connected:
                    connected = True
                    backoff.reset()
                    self._statuses.succeeded(item.name)
                self._sink.emit(item.name, readings)

            try:
                await item.stream(emit)
                error: Exception = InputError("the source closed the stream")
            except Exception as raised:  # as above: the one place that reports input failures
                error = raised
            await asyncio.sleep(self._failed(item.name, error, backoff))

    async def close(self) -> None:
        """Close polled inputs (streaming ones close when their task is cancelled)."""
        for item in self.inputs:
            if isinstance(item, PolledInput):
                with contextlib.suppress(Exception):
                    await item.close()
