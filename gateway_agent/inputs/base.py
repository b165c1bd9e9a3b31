"""What every input is: a polled driver or a streaming one, with typed settings.

Two shapes, as in Telegraf (Input and ServiceInput):

- `PolledInput`: the scheduler calls `read()` every `interval` (I2C sensors,
  sysfs, statvfs, the simulator). `open()` runs before the first read and again
  after a failure, so a sensor that was unplugged is re-initialised.
- `StreamingInput`: `stream(emit)` runs until the source fails or is cancelled
  (a BLE link, an MQTT subscription), calling `emit` with readings as they
  arrive; `emit([])` reports the source healthy (connected, subscribed)
  before any reading arrives. The scheduler restarts it with backoff when it raises.

A polled input may return camera frames (the contract's `Frame`) instead of
readings: the `camera` input does, and the agent's sink sends them to the
frame spool instead of the readings' buffer.

Inputs raise whatever their source raises; the scheduler is the one place that
logs, counts and reports failures, so drivers stay free of that plumbing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Protocol, runtime_checkable

from msgspec import Meta
from sensormesh.v1.frame_pb2 import Frame

from gateway_agent.durations import Duration
from gateway_agent.options import Options
from gateway_agent.readings import Reading

Sample = Reading | Frame
"""What an input produces: readings, or (cameras) frames."""
Emit = Callable[[Sequence[Reading]], None]


class InputError(Exception):
    """An input could not read: a wrong chip, a missing device, an unparseable value."""


class InputSettings(Options, kw_only=True, frozen=True):
    """Options every input has. Subclasses add their own; unknown keys are refused."""

    name: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="The input's name in statuses and logs; defaults to one derived from its options.",
            ),
        ]
        | None
    ) = None
    interval: Annotated[Duration, Meta(description="Time between reads (polled inputs).")] = Duration(
        seconds=1
    )


@runtime_checkable
class PolledInput(Protocol):
    """A driver the scheduler reads on its interval."""

    name: str
    interval: timedelta

    async def open(self) -> None:
        """Prepare the source (check the chip, read calibration); called again after a failure."""

    async def read(self) -> Sequence[Sample]:
        """Take one set of readings (or frames) now."""

    async def close(self) -> None:
        """Release the source; the scheduler may call `open()` again later."""


@runtime_checkable
class StreamingInput(Protocol):
    """A driver that pushes readings as its source delivers them."""

    name: str

    async def stream(self, emit: Emit) -> None:
        """Deliver readings through `emit` until the source fails (raise) or the task is cancelled."""


Input = PolledInput | StreamingInput
