"""`sensormesh bench` checks targets and prints JSON or a table."""

from __future__ import annotations

from sensormesh_core.bench_command import Target


def test_targets_compare_in_the_stated_direction() -> None:
    figures = {"samples_per_s": 350_000, "live_p99_ms": 80.0, "name": "x"}
    assert Target("samples_per_s", ">=", 300_000).met(figures) is True
    assert Target("live_p99_ms", "<=", 50).met(figures) is False
    assert Target("missing", ">=", 1).met(figures) is None
    assert Target("name", ">=", 1).met(figures) is None
