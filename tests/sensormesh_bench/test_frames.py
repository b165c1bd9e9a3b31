"""`sensormesh bench frames` runs end to end and reports the agreed figures (a short run, not a measurement)."""

from __future__ import annotations

import argparse

import pytest

from sensormesh_bench import frames

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_short_bench_reports_every_agreed_figure() -> None:
    parser = argparse.ArgumentParser()
    frames.add_arguments(parser)
    figures = await frames.run(parser.parse_args(["--cameras", "3", "--seconds", "3", "--warmup", "1"]))

    for key in (
        "frames_per_s",
        "frame_megabytes_per_s",
        "watch_latency_p50_ms",
        "watch_latency_p99_ms",
        "agent_cpu_pct_of_core",
        "agent_rss_mb",
        "agent_camera_cpu_pct_of_core",
        "agent_camera_rss_mb",
    ):
        assert figures[key] > 0, key
    assert figures["watch_frames"] == 3 * 3  # every paced frame reached its live view
    assert figures["watch_latency_p99_ms"] >= figures["watch_latency_p50_ms"]
    assert {"agent_camera_extra_cpu_pct", "agent_camera_extra_rss_mb", "ingest_cpu_pct_of_core"} <= set(
        figures
    )
    assert {t.figure for t in frames.TARGETS} <= set(figures)
