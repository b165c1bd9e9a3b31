"""After commit, a coalesced NOTIFY names what was committed, and a query
process reads exactly those rows back by sensor, time range and sequence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sensormesh.v1 import ingest_pb2_grpc

from ingest_service.notifier import CommitNotifier
from sensormesh_core.storage.live_signal import CHANNEL, CommitSignal
from tests.ingest_service.conftest import Device, wait_until
from tests.ingest_service.readings import START, batch, batches, stream

pytestmark = pytest.mark.storage

START_TIME = datetime.fromtimestamp(START, UTC)


async def _listen(database_url: str) -> tuple[asyncpg.Connection, list[CommitSignal]]:
    heard: list[CommitSignal] = []
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(CHANNEL, lambda *args: heard.append(CommitSignal.decode(args[3])))
    return listener, heard


async def test_committed_batches_are_signalled_coalesced_per_device(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, database_url: str, db: asyncpg.Connection
) -> None:
    listener, heard = await _listen(database_url)
    try:
        await stub.UploadReadings(stream(batches(device.device_id, 1, 1000, 100)), metadata=device.metadata)

        async def covered() -> bool:
            return bool(heard) and max(s.last_sequence for s in heard) == 1000

        await wait_until(covered)
    finally:
        await listener.close()

    assert {s.device_id for s in heard} == {device.device_id}
    assert len(heard) < 10  # ten commits within a few windows: merged
    assert min(s.first_sequence for s in heard) == 1
    # The signals tile the committed range: every committed number is covered once.
    covered_numbers = sorted(n for s in heard for n in range(s.first_sequence, s.last_sequence + 1))
    assert covered_numbers == list(range(1, 1001))
    # What a query process does with a signal: read the rows back by sensor, time and sequence.
    for signal in heard:
        rows = await db.fetchval(
            "SELECT count(*) FROM imu_readings i JOIN sensors s ON s.sensor_id = i.sensor_id "
            "WHERE s.device_id = $1 AND i.time BETWEEN $2 AND $3 AND i.sequence BETWEEN $4 AND $5",
            signal.device_id,
            signal.first_time,
            signal.last_time,
            signal.first_sequence,
            signal.last_sequence,
        )
        expected = sum(1 for n in range(signal.first_sequence, signal.last_sequence + 1) if n % 50 and n % 25)
        assert rows == expected
        assert signal.first_time >= START_TIME and signal.last_time <= START_TIME + timedelta(seconds=11)


async def test_a_fully_duplicated_batch_is_not_signalled(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, database_url: str
) -> None:
    upload = [batch(device.device_id, 1, 100)]
    listener, heard = await _listen(database_url)
    try:
        await stub.UploadReadings(stream(upload), metadata=device.metadata)
        await wait_until(lambda: _count(heard, 1))
        heard.clear()
        await stub.UploadReadings(stream(upload), metadata=device.metadata)  # replay: nothing new
        await stub.UploadReadings(stream([batch(device.device_id, 101, 110)]), metadata=device.metadata)
        await wait_until(lambda: _count(heard, 1))
    finally:
        await listener.close()

    assert [(s.first_sequence, s.last_sequence) for s in heard] == [(101, 110)]


async def test_the_notifier_survives_a_lost_connection(database_url: str) -> None:
    connections: list[asyncpg.Connection] = []

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(database_url)
        connections.append(conn)
        return conn

    listener, heard = await _listen(database_url)
    notifier = CommitNotifier(connect, window=0.01)
    await notifier.start()
    at = START_TIME
    try:
        notifier.publish(CommitSignal("pi-1", 1, 10, at, at))
        await wait_until(lambda: _count(heard, 1))
        # The database drops the notifier's connection (a restart, a failover).
        await listener.execute("SELECT pg_terminate_backend($1)", connections[0].get_server_pid())
        notifier.publish(CommitSignal("pi-1", 11, 20, at, at))  # sent on a new connection, or lost and logged
        await wait_until(lambda: _settled(heard, notifier, 2))
        notifier.publish(CommitSignal("pi-1", 21, 30, at, at))
        await wait_until(lambda: _settled(heard, notifier, 3), within=15)
    finally:
        await notifier.stop()
        await listener.close()

    ranges = [(s.first_sequence, s.last_sequence) for s in heard]
    assert ranges[0] == (1, 10) and ranges[-1] == (21, 30)
    assert len(heard) + notifier.dropped == 3
    assert len(connections) == 2


async def _settled(heard: list[CommitSignal], notifier: CommitNotifier, published: int) -> bool:
    return len(heard) + notifier.dropped >= published


async def _count(heard: list[CommitSignal], n: int) -> bool:
    return len(heard) >= n


async def test_signals_of_many_devices_leave_in_one_statement(database_url: str) -> None:
    listener, heard = await _listen(database_url)
    notifier = CommitNotifier(lambda: asyncpg.connect(database_url), window=0.05)
    await notifier.start()
    try:
        for number in range(1, 301):
            notifier.publish(CommitSignal(f"pi-{number % 3}", number, number, START_TIME, START_TIME))
            if number % 100 == 0:
                await asyncio.sleep(0)  # let the loop run, as between commits
        await notifier.stop()
        await wait_until(lambda: _count(heard, 3))
    finally:
        await listener.close()

    assert sorted(s.device_id for s in heard)[:3] == ["pi-0", "pi-1", "pi-2"]
    assert notifier.sent <= 6  # 300 commits of 3 devices within a window or two
