"""`sensormesh bench alerts` runs end to end and reports the agreed figures (a short run, not a measurement)."""

from __future__ import annotations

import argparse

import pytest

from sensormesh_bench import alerts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_short_bench_reports_every_agreed_figure() -> None:
    parser = argparse.ArgumentParser()
    alerts.add_arguments(parser)
    argv = [
        "--devices",
        "2",
        "--seconds-of-data",
        "20",
        "--rounds",
        "1",
        "--threshold-rules",
        "6",
        "--anomaly-rules",
        "2",
    ]
    figures = await alerts.run(parser.parse_args(argv))
    assert figures["samples_per_s_rules_on"] > 0 and figures["samples_per_s_rules_off"] > 0
    assert figures["ingest_ratio"] > 0
    assert figures["ingest_ratio"] == figures["ingest_ratio_per_round"][0]  # one round: its own pair
    assert figures["alert_latency_samples"] >= 1 and figures["alert_latency_p99_ms"] > 0
    assert {t.figure for t in alerts.TARGETS} == {"alert_latency_p99_ms", "ingest_ratio"}
