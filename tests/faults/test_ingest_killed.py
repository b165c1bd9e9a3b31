"""kill -9 of the ingest service, 20 times while three agents upload; the agents reconnect each time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

KILLS = 20


async def test_every_reading_is_stored_once_across_twenty_ingest_kills(
    ingest: Ingest, fleet: Fleet, fault_report: Callable[[int, list[Account]], None]
) -> None:
    await fleet.add(3)
    fleet.start()
    await fleet.wait_for_progress(200)
    for kill in range(KILLS):
        # Uploads in flight: some batches committed, some inside their transaction, some on the wire.
        await fleet.wait_for_progress(50 + 10 * (kill % 5))
        ingest.kill()
        await asyncio.sleep(0.2 * (kill % 4))  # down for a moment: the agents back off and buffer
        await ingest.start()
    await fleet.wait_for_delivery()

    accounts = await fleet.stop_and_account()
    fault_report(KILLS, accounts)
    for account in accounts:
        account.assert_exact()
        assert account.stored > 1000, account
    assert ingest.kills == KILLS
    assert "event=upload_resumed" in fleet.agents[0].log_path.read_text()
    assert "form=columns" in fleet.agents[0].log_path.read_text()  # the agents upload in columns
