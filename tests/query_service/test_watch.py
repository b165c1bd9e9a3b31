"""WatchReadings: live readings from commit signals, replay, slow subscribers,
heartbeats and limits, over real gRPC with the ingest-like writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc

from query_service.server import QueryServer, start_query_server
from sensormesh_cli.bearer import aio_interceptors
from tests.query_service.conftest import settings_for_tests
from tests.query_service.rpc_errors import field_violations
from tests.support.reading_writer import ReadingWriter, environment, imu, measurement

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC)


async def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


async def subscribed(server: QueryServer, count: int) -> None:
    await wait_for(lambda: server.hub.subscriber_count == count)


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


async def collect(
    stream: AsyncIterator[query_pb2.WatchReadingsResponse], until: Callable[[list[query_pb2.Reading]], bool]
) -> tuple[list[query_pb2.Reading], int]:
    readings: list[query_pb2.Reading] = []
    missed = 0
    async with asyncio.timeout(20):
        async for message in stream:
            readings += message.readings
            missed += message.missed_count
            if until(readings):
                break
    return readings, missed


async def test_live_readings_arrive_filtered(
    query_server: QueryServer, queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    everything = queries.WatchReadings(query_pb2.WatchReadingsRequest(device_id=device))
    temperature = queries.WatchReadings(
        query_pb2.WatchReadingsRequest(device_id=device, quantities=["temperature"])
    )
    soil = queries.WatchReadings(query_pb2.WatchReadingsRequest(device_id=device, sensors=["soil"]))
    await subscribed(query_server, 3)

    await writer.write(
        device, [imu("mpu", NOW + timedelta(milliseconds=10 * i), ax=float(i)) for i in range(5)]
    )
    await writer.write(device, [environment("bme280", NOW, 21.25, humidity=50.0)])
    await writer.write(device, [measurement("soil", NOW, "soil_moisture", 33.0, "%")])

    got, missed = await collect(everything, lambda r: len(r) == 7)
    assert missed == 0
    assert [r.WhichOneof("payload") for r in got] == ["imu"] * 5 + ["environment", "measurement"]
    assert [r.imu.acceleration_x_mps2 for r in got[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert got[0].sample_time.ToDatetime(tzinfo=UTC) == NOW.replace(microsecond=NOW.microsecond)
    assert got[5].environment.relative_humidity_percent == 50.0
    assert not got[5].environment.HasField("pressure_hpa")
    assert (got[6].measurement.name, got[6].measurement.value, got[6].measurement.unit) == (
        "soil_moisture",
        33.0,
        "%",
    )

    only_temperature, _ = await collect(temperature, lambda r: len(r) >= 1)
    assert [r.sensor for r in only_temperature] == ["bme280"]
    only_soil, _ = await collect(soil, lambda r: len(r) >= 1)
    assert [r.sensor for r in only_soil] == ["soil"]
    for stream in (everything, temperature, soil):
        stream.cancel()
    await subscribed(query_server, 0)


async def test_replay_joins_the_live_part_without_gaps_or_duplicates(
    query_server: QueryServer, queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    start = NOW - timedelta(minutes=30)
    older = [environment("bme280", start - timedelta(minutes=1), -1.0)]  # before start_time: not replayed
    stored = [environment("bme280", start + timedelta(milliseconds=500 * i), float(i)) for i in range(2500)]
    await writer.write(device, older)
    await writer.write(device, stored)

    stream = queries.WatchReadings(query_pb2.WatchReadingsRequest(device_id=device, start_time=stamp(start)))
    # Keep committing while the feed starts: each batch is replayed or live, never both or neither.
    live_values = [float(10_000 + i) for i in range(20)]
    for value in live_values:
        await writer.write(device, [environment("bme280", NOW, value)])

    expected = [float(i) for i in range(2500)] + live_values
    got, missed = await collect(stream, lambda r: len(r) >= len(expected))
    assert missed == 0
    assert [r.environment.temperature_celsius for r in got] == expected
    stream.cancel()


async def test_replay_reaches_back_at_most_an_hour(
    queries: query_pb2_grpc.QueryServiceStub, device: str
) -> None:
    stream = queries.WatchReadings(
        query_pb2.WatchReadingsRequest(device_id=device, start_time=stamp(NOW - timedelta(hours=2)))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "start_time" in field_violations(caught.value)


async def test_unknown_device_and_bad_filter(queries: query_pb2_grpc.QueryServiceStub, device: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await queries.WatchReadings(query_pb2.WatchReadingsRequest(device_id="pi-404")).read()
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await queries.WatchReadings(
            query_pb2.WatchReadingsRequest(device_id=device, quantities=["Bad Name"])
        ).read()
    assert "quantities[0]" in field_violations(bad.value)


async def _server(database_url: str, **overrides: object) -> QueryServer:
    return await start_query_server(settings_for_tests(**overrides), database_url=database_url)


async def test_a_slow_subscriber_is_told_what_it_missed_and_stalls_nobody(
    admin_key: str, database_url: str, writer: ReadingWriter, device: str
) -> None:
    server = await _server(database_url, subscriber_queue_size=4)
    try:
        # Without BDP probing the slow client's HTTP/2 window stays at 64 KiB, so
        # its unread messages back up into the server's queue instead of its socket.
        slow_options = [("grpc.http2.bdp_probe", 0)]
        async with (
            grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", interceptors=aio_interceptors(admin_key)
            ) as fast_channel,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", options=slow_options, interceptors=aio_interceptors(admin_key)
            ) as slow_channel,
        ):
            request = query_pb2.WatchReadingsRequest(device_id=device)
            slow = query_pb2_grpc.QueryServiceStub(slow_channel).WatchReadings(request)
            fast = query_pb2_grpc.QueryServiceStub(fast_channel).WatchReadings(request)
            await subscribed(server, 2)
            batches, size = 40, 1000
            fast_reader = asyncio.create_task(collect(fast, lambda r: len(r) == batches * size))
            started = time.monotonic()
            for b in range(batches):
                await writer.write(
                    device,
                    [
                        imu("mpu", NOW + timedelta(seconds=b, milliseconds=i), ax=float(b))
                        for i in range(size)
                    ],
                )
            writing_s = time.monotonic() - started
            fast_got, fast_missed = await fast_reader
            await wait_for(lambda: not server.hub.busy)

            # The fast subscriber got everything while the slow one read nothing.
            assert fast_missed == 0 and len(fast_got) == batches * size
            slow_got, slow_missed = await collect(
                slow, lambda r: bool(r) and r[-1].imu.acceleration_x_mps2 == batches - 1
            )
            assert slow_missed > 0
            assert len(slow_got) + slow_missed == batches * size
            # It continued with the newest readings: the last batch arrived whole.
            assert [r.imu.acceleration_x_mps2 for r in slow_got[-size:]] == [float(batches - 1)] * size
            assert writing_s < 60
            slow.cancel()
            fast.cancel()
    finally:
        await server.stop(0.5)


async def test_idle_feeds_get_heartbeats(admin_key: str, database_url: str, device: str) -> None:
    server = await _server(database_url, heartbeat_interval=timedelta(milliseconds=200))
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{server.port}", interceptors=aio_interceptors(admin_key)
        ) as channel:
            stream = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
                query_pb2.WatchReadingsRequest(device_id=device)
            )
            async with asyncio.timeout(5):
                first = await stream.read()
                second = await stream.read()
            assert first == query_pb2.WatchReadingsResponse() == second
            stream.cancel()
    finally:
        await server.stop(0.5)


async def test_subscribers_over_the_limit_are_refused(admin_key: str, database_url: str, device: str) -> None:
    server = await _server(database_url, max_subscribers=2)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{server.port}", interceptors=aio_interceptors(admin_key)
        ) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            request = query_pb2.WatchReadingsRequest(device_id=device)
            kept = [stub.WatchReadings(request) for _ in range(2)]
            await subscribed(server, 2)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.WatchReadings(request).read()
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            kept[0].cancel()
            await subscribed(server, 1)
            again = stub.WatchReadings(request)
            await subscribed(server, 2)
            for stream in (*kept, again):
                stream.cancel()
    finally:
        await server.stop(0.5)


async def test_shutdown_ends_feeds_with_unavailable(admin_key: str, database_url: str, device: str) -> None:
    server = await _server(database_url)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", interceptors=aio_interceptors(admin_key)
    ) as channel:
        stream = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
            query_pb2.WatchReadingsRequest(device_id=device)
        )
        await subscribed(server, 1)
        stopping: Awaitable[None] = asyncio.create_task(server.stop(2.0))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(10):
                await stream.read()
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        await stopping
