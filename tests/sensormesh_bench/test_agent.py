"""`sensormesh bench agent` runs end to end and reports the agreed figures (a short run, not a measurement)."""

from __future__ import annotations

import argparse

import pytest

from sensormesh_bench import agent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_short_bench_reports_every_agreed_figure() -> None:
    parser = argparse.ArgumentParser()
    agent.add_arguments(parser)
    figures = await agent.run(parser.parse_args(["--seconds", "2", "--warmup", "1", "--backlog", "20000"]))
    for key in ("rss_mb", "cpu_pct_of_core", "drain_readings_per_s", "rss_import_floor_mb"):
        assert figures[key] > 0, key
    assert figures["rss_mb"] >= figures["rss_import_floor_mb"]
    assert figures["steady_uploaded_readings_per_s"] > 0
    assert figures["ingest"].startswith("sensormesh ingest")  # the real service, not a stand-in
    assert {t.figure for t in agent.TARGETS} == {"rss_mb", "cpu_pct_of_core", "drain_readings_per_s"}
