"""Exponential backoff with jitter, for reconnecting uplinks and retrying failed inputs.

Each failure doubles the ceiling (from `initial` up to `maximum`) and the
delay is drawn between half the ceiling and the ceiling ("equal jitter"):
it keeps growing, so a server that is down is not hammered, while a fleet
of gateways that lost the same network at the same moment spreads its
reconnects instead of arriving in one wave.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays for successive retries; `reset()` after a success."""

    def __init__(
        self, initial: float, maximum: float, multiplier: float = 2.0, rng: random.Random | None = None
    ):
        if initial <= 0 or maximum < initial or multiplier < 1:
            raise ValueError("need 0 < initial <= maximum and multiplier >= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next retry may wait."""
        return min(self.maximum, self.initial * self.multiplier**self.failures)

    def next_delay(self) -> float:
        """The delay before the next retry; counts one more failure."""
        ceiling = self.ceiling()
        self.failures = min(self.failures + 1, 64)
        return self._rng.uniform(ceiling / 2, ceiling)

    async def sleep(self) -> float:
        """Wait `next_delay()` seconds; returns how long."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0
