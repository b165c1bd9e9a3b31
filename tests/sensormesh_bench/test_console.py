"""`sensormesh bench console` runs end to end and reports the agreed figures (a short run, not a
measurement: no timing is asserted)."""

from __future__ import annotations

import argparse

import pytest

from sensormesh_bench import console

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def test_short_bench_reports_every_agreed_figure() -> None:
    parser = argparse.ArgumentParser()
    console.add_arguments(parser)
    figures = console.run(parser.parse_args(["--minutes", "0.5", "--first-heap-s", "10", "--loads", "2"]))

    assert {t.figure for t in console.TARGETS} <= set(figures)
    assert figures["script_files"] >= 1
    assert 0 < figures["script_gzip_bytes"] < figures["script_bytes"]
    assert 1430 <= figures["day_draw_buckets"] <= 1440  # the bench checks the exact count itself
    assert 0 < figures["day_draw_ms_p50"] <= figures["day_draw_ms_max"]
    assert figures["heap_mb_1m"] > 0 and figures["heap_mb_end"] > 0
    assert figures["heap_ratio"] == pytest.approx(figures["heap_mb_end"] / figures["heap_mb_1m"], abs=0.01)
    assert figures["live_points"] > 0  # the 100 Hz IMU reached the chart's live tail
