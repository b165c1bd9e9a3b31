"""The fault suite's oracle catches what it is there to catch: a reading stored twice, lost, or altered."""

from __future__ import annotations

import asyncpg
import pytest

from tests.faults.accounting import account
from tests.faults.fleet import Fleet
from tests.faults.services import Ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_duplicated_a_missing_and_an_altered_row_are_each_found(
    ingest: Ingest, fleet: Fleet, database_url: str
) -> None:
    (agent,) = await fleet.add(1)
    fleet.start()
    await fleet.wait_for_progress(300)
    (clean,) = await fleet.stop_and_account()
    clean.assert_exact()

    conn = await asyncpg.connect(database_url)
    try:
        sequences = [
            r[0] for r in await conn.fetch("SELECT sequence FROM imu_readings ORDER BY sequence LIMIT 3")
        ]
        await conn.execute(
            "INSERT INTO imu_readings SELECT * FROM imu_readings WHERE sequence = $1", sequences[0]
        )
        await conn.execute("DELETE FROM imu_readings WHERE sequence = $1", sequences[1])
        await conn.execute(
            "UPDATE imu_readings SET acceleration_x = acceleration_x + 1 WHERE sequence = $1", sequences[2]
        )
        tampered = await account(conn, agent.device_id, agent.tap)
    finally:
        await conn.close()

    assert (tampered.duplicates, tampered.lost, tampered.foreign) == (1, 2, 1), tampered
    assert tampered.stored_digest != tampered.taken_digest
    with pytest.raises(AssertionError):
        tampered.assert_exact()
