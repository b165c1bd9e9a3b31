"""`sensormesh bench ingest` runs end to end (tiny sizes; the figures are for
`make bench`, not for tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.storage, pytest.mark.slow]


def test_the_benchmark_reports_its_figures(database_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "sensormesh_cli", "--log-level", "WARNING", "bench", "ingest", "--json",
            "--database-url", database_url, "--devices", "2", "--seconds-of-data", "5", "--rounds", "1",
            "--clients", "1", "--batch-size", "200",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for key in (
        "samples_per_s",
        "rows_per_s",
        "copy_limit_samples_per_s",
        "ratio",
        "batch_size",
        "devices",
        "samples",
    ):
        assert key in figures
    assert figures["batch_size"] == 200 and figures["devices"] == 2
    assert figures["samples"] == 2 * (
        5 * 600 + 5 * 3 + 3 + 5 * 2
    )  # IMU, environment, one system, measurements
    assert figures["samples_per_s"] > 0 and figures["ratio"] > 0
    assert "samples_per_s_without_notify" in figures and "notify_cost" in figures
    # the same batches in columns, beside the rows' figures
    assert figures["columnar_samples_per_s"] > 0 and figures["columnar_copy_ratio"] > 0
    assert "columnar_server_cpu_us_per_reading" in figures
    assert 0 < figures["columnar_bytes_per_sample"] < figures["rows_bytes_per_sample"]
