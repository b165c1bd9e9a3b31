"""Timing the query benchmark's calls and summarising them as p50 and p99 figures."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(count: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    """Milliseconds of `count` sequential calls after two warm-up calls."""
    for _ in range(2):
        await call()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def latency_figures(name: str, samples: list[float]) -> dict[str, float]:
    return {
        f"{name}_p50_ms": round(percentile(samples, 0.5), 3),
        f"{name}_p99_ms": round(percentile(samples, 0.99), 3),
    }
