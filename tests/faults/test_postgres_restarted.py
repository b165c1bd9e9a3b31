"""PostgreSQL stopped and started again while agents upload: once cleanly (fast), once as a crash
(immediate, with recovery at start). The ingest service stays up and resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest, OwnPostgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[tuple[OwnPostgres, str]]:
    server = OwnPostgres(tmp_path / "own-pg")
    url = await asyncio.to_thread(server.start)
    try:
        yield server, url
    finally:
        await asyncio.to_thread(server.close)


async def test_every_reading_is_stored_once_across_database_restarts(
    own_postgres: tuple[OwnPostgres, str], tmp_path: Path, fault_report: Callable[[int, list[Account]], None]
) -> None:
    server, url = own_postgres
    # Maintenance and the rollup refresher run every half second, so they meet the outage too.
    ingest = Ingest(
        url,
        tmp_path / "ingest",
        ingest_maintenance_interval="PT0.5S",
        ingest_rollup_refresh_interval="PT0.5S",
    )
    ingest.folder.mkdir()
    await ingest.start()
    fleet = Fleet(url, ingest.target, tmp_path / "agents")
    try:
        await fleet.add(3)
        fleet.start()
        await fleet.wait_for_progress(200)
        for mode in ("fast", "immediate"):
            await asyncio.to_thread(server.stop_server, mode)
            await asyncio.sleep(2)  # the agents keep taking readings and retrying
            await asyncio.to_thread(server.start_server)
            await fleet.wait_for_progress(300)
        await fleet.wait_for_delivery()
        accounts = await fleet.stop_and_account()
    finally:
        fleet.kill_all()
        assert ingest.process is not None
        still_up = ingest.process.process.poll() is None
        code = await ingest.stop()
    fault_report(server.stops, accounts)
    assert still_up and code == 0, "ingest should ride out the database restarts and stop cleanly"
    assert ingest.starts == 1
    for account in accounts:
        account.assert_exact()
    log = ingest.log_text()
    assert "event=database_unavailable" in log  # the outage was seen, and told to the agents ...
    assert "event=rollup_refresh_failed reason=database_unavailable" in log
    assert "Traceback" not in log and "level=error" not in log, log[-3000:]  # ... as expected events
