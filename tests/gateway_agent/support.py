"""Small test helpers: a deadline-bounded wait and a sink that collects readings."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

from gateway_agent.readings import Reading


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Wait for `condition` with a deadline. Conditions here span several objects (an uplink and
    a server, a scheduler and a fake device), so they are checked every 5 ms rather than on one event."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class Collector:
    """A sink that keeps what the scheduler hands over, per input, with the loop time of each hand-over."""

    def __init__(self) -> None:
        self.readings: dict[str, list[Reading]] = defaultdict(list)
        self.times: dict[str, list[float]] = defaultdict(list)

    def emit(self, input_name: str, readings: Sequence[Reading]) -> None:
        self.readings[input_name].extend(readings)
        self.times[input_name].append(asyncio.get_running_loop().time())
