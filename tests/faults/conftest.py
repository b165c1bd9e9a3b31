"""Fixtures of the fault suite: a real ingest service, real agents, and a report of what was checked.

At the end of the run pytest prints one line per fault test: faults injected,
readings the agents took, and what became of them (stored once, thinned and
reported, refused, still buffered, lost, duplicated).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest

_REPORT: list[tuple[str, int, list[Account]]] = []


@pytest.fixture
async def ingest(database_url: str, tmp_path: Path) -> AsyncIterator[Ingest]:
    service = Ingest(database_url, tmp_path / "ingest")
    service.folder.mkdir()
    await service.start()
    try:
        yield service
    finally:
        if service.process is not None and service.process.process.poll() is None:
            assert await service.stop() == 0, "ingest did not stop cleanly"


@pytest.fixture
async def fleet(database_url: str, ingest: Ingest, tmp_path: Path) -> AsyncIterator[Fleet]:
    gateways = Fleet(database_url, ingest.target, tmp_path / "agents")
    try:
        yield gateways
    finally:
        gateways.kill_all()  # only what a failed test left running


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[int, list[Account]], None]:
    """Record a test's figures for the summary at the end of the run."""

    def record(faults: int, accounts: list[Account]) -> None:
        _REPORT.append((request.node.name, faults, accounts))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORT:
        return
    write = terminalreporter.write_line
    terminalreporter.section("faults injected and readings accounted for")
    write(f"{'test':<62} {'faults':>6} {'taken':>8} {'stored':>8} {'thinned':>8} {'refused':>7} "
          f"{'buffered':>8} {'lost':>5} {'dupl.':>5}")  # fmt: skip
    for name, faults, accounts in _REPORT:
        total = {k: sum(getattr(a, k) for a in accounts)
                 for k in ("taken", "stored", "thinned", "rejected", "buffered", "lost", "duplicates")}  # fmt: skip
        write(f"{name[:62]:<62} {faults:>6} {total['taken']:>8} {total['stored']:>8} {total['thinned']:>8} "
              f"{total['rejected']:>7} {total['buffered']:>8} {total['lost']:>5} {total['duplicates']:>5}")  # fmt: skip
