"""Live feeds fed by the real ingest service (in this process, over real gRPC):
what happens when a signal never comes, and when a device is deleted while
it uploads and is watched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import grpc
import pytest
from pydantic import SecretStr
from sensormesh.v1 import device_pb2, device_pb2_grpc, ingest_pb2, query_pb2, query_pb2_grpc

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from query_service.server import QueryServer, start_query_server
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage.registry import create_device
from tests.query_service.conftest import settings_for_tests
from tests.support.uploads import Gateway, sequence_of

pytestmark = pytest.mark.storage


async def _ingest(database_url: str, **overrides: object) -> IngestServer:
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "ingest_listen": "127.0.0.1:0",
        "ingest_notify_window": timedelta(milliseconds=5),
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    return await start(IngestSettings(**(values | overrides)))  # type: ignore[arg-type]


async def _collect(feed: grpc.aio.UnaryStreamCall, count: int) -> tuple[list[query_pb2.Reading], int]:
    readings: list[query_pb2.Reading] = []
    missed = 0
    async with asyncio.timeout(10):
        while len(readings) < count:
            message = await feed.read()
            readings += message.readings
            missed += message.missed_count
    return readings, missed


@pytest.fixture
async def gateway(db: asyncpg.Connection) -> Gateway:
    record, token = await create_device(db, "pi-1")
    return Gateway(record.device_id, token)


@pytest.fixture
async def query(database_url: str) -> AsyncIterator[QueryServer]:
    server = await start_query_server(
        settings_for_tests(live_order_wait=timedelta(milliseconds=300)), database_url=database_url
    )
    try:
        yield server
    finally:
        await server.stop(0.5)


async def test_a_signal_that_never_comes_is_waited_for_then_reported_as_missed(
    admin_key: str, database_url: str, query: QueryServer, gateway: Gateway
) -> None:
    """Replica A commits 1..50 but its signal is lost (here: A sends none); replica
    B commits 51..100. The feed waits `live_order_wait` for A's signal, then
    delivers 51..100 with missed_count 50 (the readings are stored, not live)."""
    silent = await _ingest(database_url, ingest_notify=False)
    loud = await _ingest(database_url)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{silent.port}") as to_silent,
            grpc.aio.insecure_channel(f"127.0.0.1:{loud.port}") as to_loud,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{query.port}", interceptors=aio_interceptors(admin_key)
            ) as to_query,
        ):
            feed = query_pb2_grpc.QueryServiceStub(to_query).WatchReadings(
                query_pb2.WatchReadingsRequest(device_id=gateway.device_id)
            )
            await feed.initial_metadata()
            await gateway.upload(to_silent, [gateway.batch(1, 50)])
            await gateway.upload(to_loud, [gateway.batch(51, 100)])
            readings, missed = await _collect(feed, 50)
            assert missed == 50
            assert [sequence_of(r) for r in readings] == list(range(51, 101))
            feed.cancel()
    finally:
        await silent.stop(1)
        await loud.stop(1)


async def _waiting_on_lock(db: asyncpg.Connection, statement: str) -> bool:
    """Whether a backend running a statement that contains `statement` waits for a lock."""
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
            statement,
        )
    )


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_deleting_a_device_while_a_batch_commits_waits_for_it_and_deletes_its_rows(
    admin_key: str, database_url: str, db: asyncpg.Connection, query: QueryServer, gateway: Gateway
) -> None:
    """DeleteDevice and an ingest batch that carries a new input status meet on the
    device's rows: the batch holds the upload offset and then needs a share lock on
    the device row (the input status's foreign key). DeleteDevice must take the locks
    in the same order, or the two deadlock and one of them fails."""
    ingest = await _ingest(database_url)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{query.port}", interceptors=aio_interceptors(admin_key)
            ) as to_query,
        ):
            await gateway.upload(to_ingest, [gateway.batch(1, 10)])
            # Hold the batch inside its transaction, after it locked the offset: keep
            # its latest-values rows locked until DeleteDevice is waiting too.
            blocker = await asyncpg.connect(database_url)
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute(
                "SELECT 1 FROM latest_values v JOIN series se USING (series_id) "
                "JOIN sensors s USING (sensor_id) WHERE s.device_id = $1 FOR UPDATE OF v",
                gateway.device_id,
            )
            second = gateway.batch(11, 20)
            status = second.input_statuses.add(input="bme280", state=ingest_pb2.INPUT_STATE_OK)
            status.observe_time.GetCurrentTime()
            upload = asyncio.create_task(gateway.upload(to_ingest, [second]))
            await _until(lambda: _waiting_on_lock(db, "INSERT INTO latest_values"))
            devices = device_pb2_grpc.DeviceServiceStub(to_query)
            delete = asyncio.ensure_future(
                devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=gateway.device_id), timeout=30)
            )
            await _until(lambda: _waiting_on_lock(db, "FOR UPDATE"), within=5)
            await transaction.rollback()
            await blocker.close()

            uploaded = await upload
            deleted = await delete
            assert uploaded.committed_sequence == 20
            assert deleted.deleted_reading_count == 20
            assert (
                await db.fetchval("SELECT count(*) FROM devices WHERE device_id = $1", gateway.device_id) == 0
            )
    finally:
        await ingest.stop(1)


async def test_feeds_of_a_deleted_device_end_with_not_found_on_every_query_process(
    admin_key: str, database_url: str, db: asyncpg.Connection, query: QueryServer, gateway: Gateway
) -> None:
    """The device is deleted through one query process; feeds on both end (the
    deletion is heard through PostgreSQL). Registered again (an admin re-registers
    the retired id), it starts from
    sequence 1, and a new feed delivers its readings."""
    other = await start_query_server(settings_for_tests(), database_url=database_url)
    ingest = await _ingest(database_url)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{query.port}", interceptors=aio_interceptors(admin_key)
            ) as to_query,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{other.port}", interceptors=aio_interceptors(admin_key)
            ) as to_other,
        ):
            request = query_pb2.WatchReadingsRequest(device_id=gateway.device_id)
            feeds = [query_pb2_grpc.QueryServiceStub(c).WatchReadings(request) for c in (to_query, to_other)]
            for feed in feeds:
                await feed.initial_metadata()
            await gateway.upload(to_ingest, [gateway.batch(1, 30)])
            for feed in feeds:
                assert [sequence_of(r) for r in (await _collect(feed, 30))[0]] == list(range(1, 31))

            devices = device_pb2_grpc.DeviceServiceStub(to_query)
            await devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=gateway.device_id))
            for feed in feeds:
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    async with asyncio.timeout(10):
                        await feed.read()
                assert ended.value.code() is grpc.StatusCode.NOT_FOUND
                assert "was deleted" in (ended.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.upload(to_ingest, [gateway.batch(31, 40)])
            assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED)

            record, token = await create_device(db, gateway.device_id, reregister=True)  # an admin act
            again = Gateway(record.device_id, token, gateway.start_unix)
            feed = query_pb2_grpc.QueryServiceStub(to_other).WatchReadings(request)
            await feed.initial_metadata()
            await again.upload(to_ingest, [again.batch(1, 10)])
            readings, missed = await _collect(feed, 10)
            assert [sequence_of(r) for r in readings] == list(range(1, 11)) and missed == 0
            feed.cancel()
    finally:
        await ingest.stop(1)
        await other.stop(0.5)


async def test_replay_and_live_part_meet_exactly_while_a_gateway_uploads(
    admin_key: str, database_url: str, query: QueryServer, gateway: Gateway
) -> None:
    """A feed with start_time opens while the gateway keeps uploading through ingest
    (signals after commit, coalesced): every reading from start_time on arrives once,
    in order per sensor, whether it was replayed from the tables or delivered live."""
    ingest = await _ingest(database_url, ingest_notify_window=timedelta(milliseconds=50))
    batches = [gateway.batch(first, first + 19) for first in range(1, 401, 20)]
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{query.port}", interceptors=aio_interceptors(admin_key)
            ) as to_query,
        ):
            for request in batches[:10]:
                await gateway.upload(to_ingest, [request])
            start = gateway.sample_time(51)  # replay from reading 51 on

            async def keep_uploading() -> None:
                for request in batches[10:]:
                    await gateway.upload(to_ingest, [request])

            uploading = asyncio.create_task(keep_uploading())
            feed = query_pb2_grpc.QueryServiceStub(to_query).WatchReadings(
                query_pb2.WatchReadingsRequest(device_id=gateway.device_id, start_time=start)
            )
            readings, missed = await _collect(feed, 350)
            await uploading
            feed.cancel()
    finally:
        await ingest.stop(1)
    numbers = [sequence_of(r) for r in readings]
    assert missed == 0 and sorted(numbers) == list(range(51, 401))
    for sensor in ("mpu", "bme280", "soil"):
        mine = [sequence_of(r) for r in readings if r.sensor == sensor]
        assert mine == sorted(mine), sensor
