"""After commit, a coalesced NOTIFY names what was committed, and a query
process reads exactly those rows back by sensor, time range and sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sensormesh.v1 import ingest_pb2_grpc

from ingest_service.notifier import CommitNotifier
from sensormesh_core.storage.live_signal import CHANNEL, CommitSignal
from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import START, batch, batches, stream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage
UPLOAD_FORMS = ("rows", "columns")

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
            sequence = (number + 2) // 3  # each device's commits follow each other: 1, 2, 3, ...
            notifier.publish(CommitSignal(f"pi-{number % 3}", sequence, sequence, START_TIME, START_TIME))
            if number % 100 == 0:
                await asyncio.sleep(0)  # let the loop run, as between commits
        await notifier.stop()
        await wait_until(lambda: _count(heard, 3))
    finally:
        await listener.close()

    for device in ("pi-0", "pi-1", "pi-2"):
        ranges = sorted((s.first_sequence, s.last_sequence) for s in heard if s.device_id == device)
        assert [n for first, last in ranges for n in range(first, last + 1)] == list(range(1, 101))
    assert notifier.sent <= 6  # 300 commits of 3 devices within a window or two


async def test_signals_tile_the_sequence_numbers_across_gaps_and_refused_batches(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, database_url: str
) -> None:
    """Each signal starts right after the previous mark, so a query process can tell
    when one is missing; a batch whose every reading was refused still moves the
    mark and is signalled, without a time range (nothing to read back)."""
    refused = batch(device.device_id, 21, 22)
    for item in refused.readings:
        item.reading.ClearField("sample_time")  # required by the contract: refused, dead-lettered
    listener, heard = await _listen(database_url)
    try:
        uploads = [batch(device.device_id, 1, 10), batch(device.device_id, 16, 20), refused]
        for upload in [*uploads, batch(device.device_id, 23, 30)]:
            await stub.UploadReadings(stream([upload]), metadata=device.metadata)
            # One signal per upload: wait for it before the next, so none are merged.
            await wait_until(_covering(heard, upload.last_sequence))
    finally:
        await listener.close()

    assert [(s.first_sequence, s.last_sequence, s.has_rows) for s in heard] == [
        (1, 10, True),
        (11, 20, True),  # 11..15 were skipped by the device
        (21, 22, False),  # both readings refused: the mark moved, no row to read
        (23, 30, True),
    ]
    assert heard[2].first_time is None and heard[2].last_time is None


def _covering(heard: list[CommitSignal], last: int) -> Callable[[], Awaitable[bool]]:
    async def covered() -> bool:
        return bool(heard) and heard[-1].last_sequence >= last

    return covered


async def test_signals_with_a_hole_between_them_stay_apart(database_url: str) -> None:
    """The device committed 11..20 on another replica in between: 1..10 and 21..30 are two signals."""
    listener, heard = await _listen(database_url)
    notifier = CommitNotifier(lambda: asyncpg.connect(database_url), window=0.05)
    await notifier.start()
    try:
        notifier.publish(CommitSignal("pi-1", 1, 10, START_TIME, START_TIME))
        notifier.publish(CommitSignal("pi-1", 21, 30, START_TIME, START_TIME))
        notifier.publish(CommitSignal("pi-1", 31, 40, START_TIME, START_TIME))
        await notifier.stop()
        await wait_until(lambda: _count(heard, 2))
    finally:
        await listener.close()
    assert [(s.first_sequence, s.last_sequence) for s in heard] == [(1, 10), (21, 40)]


async def test_an_idle_notifier_signals_at_once_and_a_busy_one_once_per_window(database_url: str) -> None:
    """The window bounds the statements, not the wait after a quiet spell: the first
    commit goes out at once; commits within the next window wait for its end, together."""
    listener, heard = await _listen(database_url)
    notifier = CommitNotifier(lambda: asyncpg.connect(database_url), window=30.0)
    await notifier.start()
    try:
        notifier.publish(CommitSignal("pi-1", 1, 10, START_TIME, START_TIME))
        await wait_until(lambda: _count(heard, 1), within=5)  # far less than the 30 s window
        notifier.publish(CommitSignal("pi-1", 11, 20, START_TIME, START_TIME))
        notifier.publish(CommitSignal("pi-2", 1, 5, START_TIME, START_TIME))
        await listener.execute("SELECT 1")  # a round trip: anything sent by now has arrived
        assert len(heard) == 1 and notifier.sent == 1  # held until the window ends
        await notifier.stop()  # ...or the service stops: nothing is left behind
        await wait_until(lambda: _count(heard, 3))
    finally:
        await listener.close()
    assert sorted((s.device_id, s.first_sequence, s.last_sequence) for s in heard) == [
        ("pi-1", 1, 10),
        ("pi-1", 11, 20),
        ("pi-2", 1, 5),
    ]
