"""The frame rate limit: a token bucket per device, paying by waiting, not by refusal.

A device may store `rate` frames a second on average and `burst` at once.
A batch takes a token per frame; when the bucket runs dry the stream waits
until the tokens are earned before its batch commits. HTTP/2 flow control
passes the wait back to the device, which simply uploads more slowly: a
backlog after an outage drains at `rate`, and nothing is refused or lost.
Buckets are per ingest process (a device's streams reach one process at a
time in practice; with several replicas a device may get a bucket on each),
which the documentation states.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_BUCKETS = 10_000
"""Buckets kept before full ones (idle devices) are forgotten: a full bucket is a new bucket."""


class FramePacer:
    """Per-device token buckets of `rate` frames/s holding at most `burst`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # device -> (tokens, when)

    def take(self, device_id: str, frames: int) -> float:
        """Take `frames` tokens of the device's bucket; returns the seconds to wait before using
        them (0 when the bucket had them). Tokens may go negative: the debt is what the wait pays."""
        now = self._clock()
        tokens, then = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate) - frames
        if device_id not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            self._forget_full(now)
        self._buckets[device_id] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / self._rate

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            device: (tokens, then)
            for device, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self._rate < self._burst
        }
