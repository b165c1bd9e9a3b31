"""Group commit: batches of different devices that wait at the same time share
one transaction, and each keeps its own outcome.

Each test holds the first transaction on a device's mark row (a lock taken
from the test's own connection), so the batches that arrive meanwhile
deterministically wait together for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.storage.registry import DEVICE_STATUS_DISABLED
from sensormesh_core.telemetry import Telemetry
from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import batches, expected, mark, stored, stream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage

UPLOAD_FORMS = ("rows", "columns")


@pytest.fixture
def ingest_settings(ingest_settings: IngestSettings) -> IngestSettings:
    ingest_settings.ingest_commit_concurrency = 1
    ingest_settings.ingest_pipeline_depth = 4  # a stream holds up to three batches behind the one committing
    return ingest_settings


async def _until(condition: Callable[[], bool], what: str) -> None:
    async def holds() -> bool:
        return condition()

    await wait_until(holds, what=what)


async def _upload(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, first: int = 1, last: int = 300
) -> ingest_pb2.UploadReadingsResponse:
    response: ingest_pb2.UploadReadingsResponse = await stub.UploadReadings(
        stream(batches(device.device_id, first, last, 300)), metadata=device.metadata
    )
    return response


async def _hold_mark(admin: asyncpg.Connection, device: Device) -> asyncpg.transaction.Transaction:
    """The device's mark row locked by the test until the returned transaction ends."""
    transaction = admin.transaction()
    await transaction.start()
    await admin.execute("SELECT 1 FROM upload_offsets WHERE device_id = $1 FOR UPDATE", device.device_id)
    return transaction


async def _refuse_mark_moves(db: asyncpg.Connection, when: str) -> None:
    """A trigger that makes the database refuse a mark's move when `when` holds for the new row."""
    await db.execute(
        f"""
        CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF {when} THEN RAISE EXCEPTION 'refused by the test'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_mark BEFORE UPDATE ON upload_offsets
          FOR EACH ROW EXECUTE FUNCTION refuse_mark();
        """
    )


class HeldGroup:
    """The first device's batch held in its transaction by the test's lock on its mark, while
    other uploads queue behind it; `release` lets everything commit."""

    def __init__(
        self, ingest: IngestServer, admin: asyncpg.Connection, stub: ingest_pb2_grpc.IngestServiceStub
    ):
        self._admin = admin
        self._stub = stub
        self._transaction: asyncpg.transaction.Transaction | None = None
        self.committer = ingest.app.committer
        self._first: asyncio.Future[ingest_pb2.UploadReadingsResponse] | None = None
        self._queued: list[asyncio.Future[ingest_pb2.UploadReadingsResponse]] = []

    async def hold(self, device: Device) -> None:
        self._transaction = await _hold_mark(self._admin, device)
        self._first = asyncio.ensure_future(_upload(self._stub, device))
        committer = self.committer
        await _until(lambda: committer.running == 1 and committer.waiting == 0, "the first transaction waits")

    async def queue(self, devices: list[Device]) -> None:
        """Start the devices' uploads; return once each batch waits for a transaction."""
        self._queued = [asyncio.ensure_future(_upload(self._stub, d)) for d in devices]
        await _until(lambda: self.committer.waiting == len(devices), f"{len(devices)} batches wait")

    async def release(self) -> list[ingest_pb2.UploadReadingsResponse | BaseException]:
        """Let the first transaction go; the queued uploads' responses or errors, in order."""
        assert self._transaction is not None and self._first is not None
        await self._transaction.rollback()
        await self._first
        return await asyncio.gather(*self._queued, return_exceptions=True)


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to hold a lock while `db` reads."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def devices(register: Callable[[str], Awaitable[Device]]) -> list[Device]:
    return [await register(f"greenhouse-pi-{n}") for n in range(1, 5)]


async def _transactions(db: asyncpg.Connection, devices: list[Device]) -> dict[str, str]:
    """The transaction that last moved each device's mark (its xmin)."""
    rows = await db.fetch(
        "SELECT device_id, xmin::text AS xmin FROM upload_offsets WHERE device_id = ANY($1::text[])",
        [d.device_id for d in devices],
    )
    return {r["device_id"]: r["xmin"] for r in rows}


async def test_batches_that_wait_together_commit_in_one_transaction_each_exactly_once(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    held = HeldGroup(ingest, admin, stub)
    await held.hold(devices[0])
    await held.queue(devices[1:])
    responses = await held.release()

    assert [r.committed_sequence for r in responses] == [300, 300, 300]  # type: ignore[union-attr]
    assert held.committer.groups == 2 and held.committer.grouped == 4
    transactions = await _transactions(db, devices)
    assert len({transactions[d.device_id] for d in devices[1:]}) == 1
    assert transactions[devices[0].device_id] != transactions[devices[1].device_id]
    for device in devices:
        assert await stored(db, device.device_id) == expected(range(1, 301))
        assert await mark(db, device.device_id) == 300


async def test_a_device_disabled_while_its_batch_waited_fails_alone_and_the_group_commits(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    held = HeldGroup(ingest, admin, stub)
    await held.hold(devices[0])
    await held.queue(devices[1:])
    await db.execute(
        "UPDATE devices SET status = $2 WHERE device_id = $1", devices[2].device_id, DEVICE_STATUS_DISABLED
    )
    outcomes = await held.release()

    refused = outcomes[1]
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED and "disabled" in (refused.details() or "")
    assert held.committer.groups == 2
    assert await stored(db, devices[2].device_id) == expected([])
    for device in (devices[1], devices[3]):
        assert await stored(db, device.device_id) == expected(range(1, 301))
    transactions = await _transactions(db, devices)
    assert transactions[devices[1].device_id] == transactions[devices[3].device_id]


async def test_a_group_the_database_refuses_is_committed_again_batch_by_batch(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    """A batch the database refuses (here a trigger refuses one device's mark)
    would fail every batch of its group; committed again alone, it fails alone."""
    poisoned = devices[2].device_id
    await _refuse_mark_moves(db, f"NEW.device_id = '{poisoned}'")
    held = HeldGroup(ingest, admin, stub)
    await held.hold(devices[0])
    await held.queue(devices[1:])
    outcomes = await held.release()

    assert isinstance(outcomes[1], grpc.aio.AioRpcError)
    assert await stored(db, poisoned) == expected([])
    assert await mark(db, poisoned) == 0
    for device in (devices[1], devices[3]):
        assert await stored(db, device.device_id) == expected(range(1, 301))
        assert await mark(db, device.device_id) == 300
    assert held.committer.groups == 3  # the held one, then each good batch alone


async def test_a_devices_next_batch_waits_for_the_next_transaction(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    """Two streams of one device (a reconnect racing the old stream): one batch
    per device per transaction, so each is cut at the mark the other left."""
    held = HeldGroup(ingest, admin, stub)
    await held.hold(devices[0])
    await held.queue([devices[1], devices[1]])
    responses = [r for r in await held.release() if isinstance(r, ingest_pb2.UploadReadingsResponse)]

    assert sorted(r.accepted_count for r in responses) == [0, 300]
    assert sorted(r.duplicate_count for r in responses) == [0, 300]
    assert held.committer.groups == 3
    assert await stored(db, devices[1].device_id) == expected(range(1, 301))


async def _upload_held(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    transaction: asyncpg.transaction.Transaction,
    prepared: int = 4,
) -> ingest_pb2.UploadReadingsResponse | BaseException:
    """Upload 1..400 in four batches while the first waits on the held mark; release it once
    `prepared` batches are decoded (the three others behind it, unless the stream has no room
    for them); the response or the error."""
    upload = asyncio.ensure_future(
        stub.UploadReadings(stream(batches(device.device_id, 1, 400, 100)), metadata=device.metadata)
    )
    app, committer = ingest.app, ingest.app.committer
    await _until(
        lambda: committer.running == 1 and app.batches_prepared == prepared, f"{prepared} batches decoded"
    )
    await transaction.rollback()
    return (await asyncio.gather(upload, return_exceptions=True))[0]


async def test_a_streams_batches_that_wait_behind_its_first_commit_together_exactly_once(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    device = devices[0]
    response = await _upload_held(ingest, stub, device, await _hold_mark(admin, device))

    assert isinstance(response, ingest_pb2.UploadReadingsResponse)
    assert (response.committed_sequence, response.accepted_count, response.duplicate_count) == (400, 400, 0)
    committer = ingest.app.committer
    assert (committer.groups, committer.grouped) == (2, 4)  # the held batch, then the other three in one
    assert await stored(db, device.device_id) == expected(range(1, 401))
    assert await mark(db, device.device_id) == 400


async def test_joined_batches_the_database_refuses_are_committed_again_one_by_one(
    ingest: IngestServer,
    stub: ingest_pb2_grpc.IngestServiceStub,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    """The database refuses the device's mark past 200 (a trigger): the three joined batches
    (101..400) fail together, then 101..200 commits alone and 201..300 fails alone, so the
    stream stores what it would have stored batch by batch."""
    device = devices[0]
    await _refuse_mark_moves(db, f"NEW.device_id = '{device.device_id}' AND NEW.committed_sequence > 200")
    outcome = await _upload_held(ingest, stub, device, await _hold_mark(admin, device))

    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert await stored(db, device.device_id) == expected(range(1, 201))
    assert await mark(db, device.device_id) == 200
    assert ingest.app.committer.groups == 2  # the held batch, and 101..200 alone


async def test_a_stream_holds_at_most_two_of_the_largest_batches_of_readings(
    ingest_settings: IngestSettings,
    telemetry: Telemetry,
    db: asyncpg.Connection,
    admin: asyncpg.Connection,
    devices: list[Device],
) -> None:
    """With batches of at most 150 readings, a stream holds 300 decoded (the depth, 4, would
    allow 400): three batches of 100 while the first waits, the fourth decoded once it commits,
    so the second and third commit together and the fourth alone."""
    settings = ingest_settings.model_copy(update={"ingest_max_batch_readings": 150})
    server = await start(settings, telemetry=telemetry)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            device = devices[0]
            response = await _upload_held(server, stub, device, await _hold_mark(admin, device), prepared=3)
        committer = server.app.committer
        assert (committer.groups, committer.grouped) == (3, 4)
    finally:
        await server.stop(grace=5)

    assert isinstance(response, ingest_pb2.UploadReadingsResponse)
    assert response.committed_sequence == 400
    assert await stored(db, device.device_id) == expected(range(1, 401))
