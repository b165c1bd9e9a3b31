"""`sensormesh bench` checks targets and prints JSON or a table."""

from __future__ import annotations

from sensormesh_bench.targets import Target


def test_targets_compare_in_the_stated_direction() -> None:
    figures = {"samples_per_s": 350_000, "live_p99_ms": 80.0, "name": "x"}
    assert Target("samples_per_s", ">=", 300_000).met(figures) is True
    assert Target("live_p99_ms", "<=", 50).met(figures) is False
    assert Target("missing", ">=", 1).met(figures) is None
    assert Target("name", ">=", 1).met(figures) is None
    assert Target("rss_mb", "<", 60).met({"rss_mb": 60.0}) is False  # "under 60" excludes 60
    assert Target("rss_mb", "<", 60).met({"rss_mb": 59.9}) is True


def test_the_table_puts_each_figure_beside_its_target_and_verdict() -> None:
    from sensormesh_bench.command import _table

    table = _table(
        {
            "agent": {"rss_mb": 61.1, "cpu_pct_of_core": 4.2, "ingest": "sensormesh ingest"},
            "query": {"latest_p50_ms": 1.5},
        }
    )
    rows = {line.split()[1]: line for line in table.splitlines()[1:]}
    assert rows["rss_mb"].split()[2:] == ["61.100", "<", "60", "MISSED"]
    assert rows["cpu_pct_of_core"].split()[2:] == ["4.200", "<=", "5", "met"]
    assert rows["ingest"].split()[2:] == ["sensormesh", "ingest"]  # no target: no verdict
    assert rows["latest_p50_ms"].endswith("met")
