"""Runs every input on its own schedule, concurrently, and isolates their failures.

Each input gets its own task. A polled input is read every `interval` on a
fixed grid (a slow read does not shift later samples; missed ticks are
skipped, not bunched up). A failure of any kind is logged, counted in the
`sensormesh.agent.input.errors` metric, recorded on the status board (sent to
the server with the next batch) and retried with exponential backoff after
closing and reopening the input, so an unplugged sensor is re-detected. One
input failing or hanging never delays the others: blocking drivers run in
worker threads, and every read has a timeout.

Commands change inputs at run time (gateway_agent/commands/builtins.py):
`set_interval` moves a polled input to a new grid at once, `set_enabled`
stops an input's task (closing its source) or starts it again, and
`read_now` takes one reading between the scheduled ones. A polled input's
source is used by one caller at a time (its task or a `read_now`), so a
driver never sees two transactions on its bus at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import metrics
from sensormesh.v1.frame_pb2 import Frame

from gateway_agent.backoff import Backoff
from gateway_agent.buffer import Buffer, Record
from gateway_agent.frame_buffer import FrameBuffer
from gateway_agent.inputs.base import Input, InputError, PolledInput, Sample, StreamingInput
from gateway_agent.readings import Reading, sample_time_ns
from gateway_agent.status import StatusBoard

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the scheduler hands readings."""

    def emit(self, input_name: str, readings: Sequence[Sample]) -> None: ...


class ReadingSink:
    """The agent's sink: readings encoded once, into the buffer's next group commit; camera
    frames to the frame spool (`frames`), which an agent without cameras does not have.

    Counts are plain integers reported through an observable counter: at 100 Hz a
    synchronous `Counter.add` (attribute checks, aggregation) would cost more than the reading.
    """

    def __init__(self, buffer: Buffer, meter: metrics.Meter, frames: FrameBuffer | None = None) -> None:
        self._buffer = buffer
        self._frames = frames
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

    def emit(self, input_name: str, readings: Sequence[Sample]) -> None:
        if not readings:
            return
        frames = [item for item in readings if isinstance(item, Frame)]
        if frames:
            if self._frames is None:
                raise RuntimeError(f"{input_name} captured frames, but this agent has no frame spool")
            self._frames.add(frames)
            readings = [item for item in readings if not isinstance(item, Frame)]
        self._buffer.add(
            [
                Record(r.sensor, sample_time_ns(r), r.SerializeToString())
                for r in readings
                if isinstance(r, Reading)
            ]
        )
        self.taken[input_name] = self.taken.get(input_name, 0) + len(readings) + len(frames)


class ControlError(Exception):
    """A run-time change the scheduler cannot make; the message says why, for the operator."""


@dataclass
class _Slot:
    """One input and what may change about it at run time."""

    item: Input
    interval: float | None  # seconds; None for a streaming input
    # `item` when it is a polled input, told once here: a Protocol's isinstance costs 14 us, and
    # a 100 Hz input's reads would pay it every tick.
    polled: PolledInput | None = None
    enabled: bool = True
    opened: bool = False  # a polled input's source is open
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one user of a polled source at a time
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # wakes a polled input's wait
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class InputRuntime:
    """An input as the scheduler runs it now."""

    name: str
    polled: bool
    enabled: bool
    interval_seconds: float | None  # None for a streaming input


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
        self._slots = {
            i.name: _Slot(i, None)
            if isinstance(i, StreamingInput)
            else _Slot(i, i.interval.total_seconds(), i)
            for i in self.inputs
        }
        self._sink = sink
        self._statuses = statuses
        self._errors = meter.create_counter(
            "sensormesh.agent.input.errors", unit="{error}", description="Failed reads, by input."
        )
        self._retry = (retry_initial, retry_max)
        self._read_timeout = read_timeout
        self._crashed: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """Run every enabled input until cancelled; raises if an input's task fails unexpectedly."""
        self._crashed = asyncio.get_running_loop().create_future()
        try:
            for slot in self._slots.values():
                if slot.enabled:
                    self._start(slot)
            await self._crashed
        finally:
            self._crashed = None
            tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
            for slot in self._slots.values():
                slot.task = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, slot: _Slot) -> None:
        slot.task = asyncio.create_task(self._run_one(slot), name=f"input:{slot.item.name}")
        slot.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._crashed is None or self._crashed.done():
            return
        error = task.exception()
        if error is not None:
            self._crashed.set_exception(error)

    # -- run-time control (commands) ---------------------------------------------------------------

    def runtime(self) -> list[InputRuntime]:
        """Every input as it runs now, in configuration order."""
        return [
            InputRuntime(name, slot.interval is not None, slot.enabled, slot.interval)
            for name, slot in self._slots.items()
        ]

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            known = ", ".join(self._slots) or "none"
            raise ControlError(f"no input named {name!r}; configured: {known}")
        return slot

    def set_interval(self, name: str, seconds: float) -> float:
        """Read polled input `name` every `seconds` from now on; returns the previous interval."""
        slot = self._slot(name)
        if slot.interval is None:
            raise ControlError(f"{name} is a streaming input: its source decides when readings come")
        if not seconds > 0:
            raise ControlError("the interval must be more than 0 seconds")
        previous, slot.interval = slot.interval, seconds
        slot.changed.set()
        return previous

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        """Start or stop input `name` (stopping closes its source); returns whether it was enabled."""
        slot = self._slot(name)
        previous, slot.enabled = slot.enabled, enabled
        if enabled and slot.task is None and self._crashed is not None:
            self._start(slot)
        elif not enabled and slot.task is not None:
            task, slot.task = slot.task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._close(slot)
        return previous

    async def read_now(self, name: str) -> int:
        """Take one reading of polled input `name` now, hand it to the sink; returns how many readings."""
        slot = self._slot(name)
        if slot.interval is None:
            raise ControlError(
                f"{name} is a streaming input: it delivers readings as its source sends them,"
                " and cannot be read on demand"
            )
        if not slot.enabled:
            raise ControlError(f"{name} is disabled; enable_input it first")
        try:
            readings = await self._read(slot, max(self._read_timeout, slot.interval))
        except Exception as error:  # reported like a scheduled read's failure, and to the operator
            self._failed(name, error, None)
            await self._close(slot)
            raise ControlError(f"reading {name} failed: {type(error).__name__}: {error}") from error
        self._statuses.succeeded(name)
        self._sink.emit(name, readings)
        return len(readings)

    # -- the input tasks ---------------------------------------------------------------------------

    async def _run_one(self, slot: _Slot) -> None:
        item = slot.item
        if isinstance(item, StreamingInput):
            await self._run_streaming(item)
        else:
            await self._run_polled(slot)

    def _failed(self, name: str, error: BaseException, backoff: Backoff | None) -> float:
        delay = backoff.next_delay() if backoff is not None else 0.0
        message = str(error) or type(error).__name__
        self._statuses.failed(name, f"{type(error).__name__}: {message}")
        self._errors.add(1, {"input": name})
        log.warning(
            "event=input_failed input=%s error_type=%s error=%r error_count=%d retry_in_seconds=%.1f",
            name, type(error).__name__, message, self._statuses.error_count(name), delay,
        )  # fmt: skip
        return delay

    async def _read(self, slot: _Slot, limit_s: float) -> Sequence[Sample]:
        """Open the source if needed and read it, within `limit_s`, as the source's only user."""
        item = slot.polled
        assert item is not None
        async with slot.lock, asyncio.timeout(limit_s):
            if not slot.opened:
                await item.open()
                slot.opened = True
            return await item.read()

    async def _close(self, slot: _Slot) -> None:
        item = slot.polled
        async with slot.lock:
            if slot.opened and item is not None:
                slot.opened = False
                with contextlib.suppress(Exception):
                    await item.close()

    async def _run_polled(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._retry)
        next_at = loop.time()
        while True:
            slot.changed.clear()
            interval = slot.interval or 0.0
            try:
                readings = await self._read(slot, max(self._read_timeout, interval))
            except Exception as error:  # drivers raise what their source raises; reported here, once
                delay = self._failed(slot.item.name, error, backoff)
                await self._close(slot)
                await asyncio.sleep(delay)
                next_at = loop.time()
                continue
            backoff.reset()
            self._statuses.succeeded(slot.item.name)
            self._sink.emit(slot.item.name, readings)
            next_at = await self._wait_next(slot, next_at, interval)

    async def _wait_next(self, slot: _Slot, tick: float, interval: float) -> float:
        """Sleep until the tick after `tick` and return it; a new interval starts a new grid from
        `tick` at once (reading now if that tick has passed)."""
        loop = asyncio.get_running_loop()
        next_at = tick + interval
        now = loop.time()
        if next_at < now:  # fell behind: skip the missed ticks rather than bunch reads up
            next_at += ((now - next_at) // interval + 1) * interval
        while (delay := next_at - loop.time()) > 0:
            try:
                async with asyncio.timeout(delay):
                    await slot.changed.wait()
            except TimeoutError:
                break
            slot.changed.clear()
            next_at = max(tick + (slot.interval or interval), loop.time())
        return next_at

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
        """Close polled inputs (streaming ones close when their task is cancelled); call after `run()`
        has ended. Every polled input is closed, opened or not: a source cancelled halfway through
        `open()` releases what it took."""
        for slot in self._slots.values():
            if slot.polled is not None:
                slot.opened = False
                with contextlib.suppress(Exception):
                    await slot.polled.close()
