"""`sensormesh bench query` runs end to end (tiny sizes; the figures are for
`make bench`, not for tests): ingest, query, Envoy and gateway processes, on a
database of the test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.storage, pytest.mark.slow]


def test_the_benchmark_reports_its_figures(postgres_admin_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "sensormesh_cli", "--log-level", "WARNING", "bench", "query", "--json",
            "--iterations", "3", "--raw-iterations", "1", "--live-seconds", "2.5",
            "--load-samples-per-s", "2500", "--load-processes", "1",
        ],
        env={**os.environ, "SENSORMESH_DATABASE_URL": postgres_admin_url},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for key in ("latest_p50_ms", "range_day_raw_p50_ms", "range_day_1m_p50_ms", "rest_grpc_ratio"):
        assert figures[key] > 0
    # The day at 1-minute buckets in columns: gRPC, REST with libcurl and with httpx, and its sizes.
    for key in (
        "range_day_1m_columns_p50_ms",
        "rest_columns_curl_range_day_1m_p50_ms",
        "rest_columns_httpx_range_day_1m_p50_ms",
        "rest_curl_range_day_1m_p50_ms",
        "rest_columns_grpc_ratio",
        "rest_columns_httpx_grpc_ratio",
        "rest_columns_curl_stdlib_json_grpc_ratio",
        "json_day_1m_columns_stdlib_parse_p50_ms",
        "json_day_1m_columns_orjson_parse_p50_ms",
    ):
        assert figures[key] > 0, key
    rows, columns = figures["json_day_1m_rows_bytes"], figures["json_day_1m_columns_bytes"]
    assert columns < rows / 1.5
    assert figures["json_day_1m_columns_br_bytes"] < figures["json_day_1m_columns_gzip_bytes"] < columns / 5
    assert 0 < figures["live_p50_ms"] <= figures["live_p99_ms"]
    assert figures["live_probe_readings"] > 10 and figures["live_probe_lost"] == 0
    assert figures["live_load_gateways"] == 4  # 2,500 samples/s of 605-sample gateway-seconds
    # Every reading the gateways sent was committed and reached their feeds.
    sent = figures["live_load_readings_sent"]
    assert sent > 0 and figures["live_load_readings_committed"] == sent
    assert figures["live_load_readings_delivered"] + figures["live_load_readings_missed"] == sent
    assert {"live_cpu_ingest_pct", "live_cpu_query_pct"} <= set(figures)
