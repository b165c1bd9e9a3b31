"""kill -9 of the agents while they upload and while they buffer through an outage, then restarted."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable

import pytest

from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KILLS_UPLOADING = 4
KILLS_BUFFERING = 2


async def test_every_reading_taken_is_stored_once_across_agent_kills(
    ingest: Ingest, fleet: Fleet, fault_report: Callable[[int, list[Account]], None]
) -> None:
    chance = random.Random(7)
    await fleet.add(3)
    fleet.start()
    await fleet.wait_for_progress(200)
    for _ in range(KILLS_UPLOADING):
        await fleet.wait_for_progress(50)
        for agent in fleet.agents:
            await asyncio.sleep(chance.uniform(0, 0.3))  # anywhere: a group commit, a stream, a resume
            agent.kill()
            agent.start()
    ingest.kill()  # an outage: the agents only buffer
    for _ in range(KILLS_BUFFERING):
        await asyncio.sleep(1.0)
        for agent in fleet.agents:
            agent.kill()
            agent.start()
    await asyncio.sleep(1.0)
    await ingest.start()
    await fleet.wait_for_delivery()

    accounts = await fleet.stop_and_account()
    kills = sum(agent.kills for agent in fleet.agents)
    fault_report(kills, accounts)
    assert kills == len(fleet.agents) * (KILLS_UPLOADING + KILLS_BUFFERING)
    for agent, account in zip(fleet.agents, accounts, strict=True):
        account.assert_exact()
        with sqlite3.connect(agent.tap.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
