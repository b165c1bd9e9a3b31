"""`sensormesh bench commands` runs end to end and reports the agreed figures (a short run, not a measurement)."""

from __future__ import annotations

import argparse

import pytest

from sensormesh_bench import commands

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_short_bench_reports_every_agreed_figure() -> None:
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    argv = [
        "--pings",
        "40",
        "--load",
        "30000",
        "--load-devices",
        "2",
        "--offline-devices",
        "4",
        "--offline-commands",
        "12",
    ]
    figures = await commands.run(parser.parse_args(argv))
    assert figures["pings"] == 40
    for key in ("ping_idle_p50_ms", "ping_idle_p99_ms", "ping_p50_ms", "ping_p99_ms", "load_samples_per_s"):
        assert figures[key] > 0, key
    assert figures["ping_p99_ms"] >= figures["ping_p50_ms"]
    assert (figures["offline_delivered"], figures["offline_delivered_ratio"]) == (12, 1.0)
    assert figures["offline_delivery_s"] > 0
    assert {t.figure for t in commands.TARGETS} == {"ping_p99_ms", "offline_delivered_ratio", "load_ratio"}
