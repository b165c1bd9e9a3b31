"""The link between agents and the ingest service cut (connections reset) and stalled (bytes stop
moving, connections stay open), through a TCP proxy, while three agents upload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from tests.faults.accounting import Account
from tests.faults.fleet import Fleet
from tests.faults.proxy import FaultProxy
from tests.faults.services import Ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CUTS = 6
STALLS = 3


@pytest.fixture
def proxy(ingest: Ingest) -> Iterator[FaultProxy]:
    link = FaultProxy(("127.0.0.1", ingest.port))
    link.start()
    try:
        yield link
    finally:
        link.close()


async def test_every_reading_is_stored_once_across_cut_and_stalled_links(
    ingest: Ingest, proxy: FaultProxy, fleet: Fleet, fault_report: Callable[[int, list[Account]], None]
) -> None:
    fleet.target = proxy.target
    await fleet.add(3)
    fleet.start()
    await fleet.wait_for_progress(200)
    for cut in range(CUTS):
        await fleet.wait_for_progress(40 + 15 * cut)  # mid-stream: batches on the wire, acks on the way
        proxy.cut()
        await asyncio.sleep(0.3 * (cut % 3))
        proxy.restore()
    for stall in range(STALLS):
        await fleet.wait_for_progress(60)
        proxy.stall()
        # Shorter and longer than a stream's deadline (stream_max_duration + ack_timeout = 5 s):
        # the held bytes arrive late, or the agent gave the stream up and resumes from the mark.
        await asyncio.sleep((2.0, 6.0, 3.5)[stall])
        proxy.restore()
    await fleet.wait_for_delivery()

    accounts = await fleet.stop_and_account()
    fault_report(CUTS + STALLS, accounts)
    for account in accounts:
        account.assert_exact()
    assert proxy.connections_cut >= CUTS  # the cuts broke live connections, not idle air
    logs = [agent.log_path.read_text() for agent in fleet.agents]
    assert all("code=UNAVAILABLE" in log for log in logs)  # the cuts
    assert all("code=DEADLINE_EXCEEDED" in log for log in logs)  # the stall past a stream's deadline
