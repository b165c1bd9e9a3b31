"""The soak's figures, printed at the end of the run (its test would otherwise only pass)."""

from __future__ import annotations

import pytest

SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("soak")
        for line in SUMMARY:
            terminalreporter.write_line(line)
