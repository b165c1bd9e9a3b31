"""Link health through the query service: latest values and history as for every payload,
and the fleet answer (each device's lowest battery and weakest signal) on GetDevice and
ListDevices, sorted and paged by them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import device_pb2, device_pb2_grpc, query_pb2, query_pb2_grpc, reading_pb2

from query_service.server import QueryServer
from sensormesh_core.storage.registry import create_device
from tests.query_service.rpc_errors import field_violations
from tests.query_service.test_watch import wait_for
from tests.support.reading_writer import ReadingWriter, imu, link_health

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC).replace(microsecond=0)


async def _register(writer: ReadingWriter, *device_ids: str) -> None:
    for device_id in device_ids:
        await create_device(writer.conn, device_id)


async def test_latest_and_history_serve_link_health_like_any_payload(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    start = NOW - timedelta(minutes=10)
    await writer.write(
        device,
        [imu("ble:tag", start)]
        + [
            link_health("ble:tag", start + timedelta(minutes=m), battery=90 - m, rssi=-70.5 - m)
            for m in range(4)
        ]
        + [link_health("ble:tag", start + timedelta(minutes=4), rssi=-60)],
    )

    latest = await queries.GetLatestReadings(
        query_pb2.GetLatestReadingsRequest(device_id=device, quantities=["battery_level", "signal_strength"])
    )
    assert [(v.sensor, v.quantity, v.unit, v.value) for v in latest.values] == [
        ("ble:tag", "battery_level", "%", 87.0),  # the last reading with a battery level
        ("ble:tag", "signal_strength", "dB[mW]", -60.0),
    ]
    history = await queries.ListReadings(
        query_pb2.ListReadingsRequest(device_id=device, sensors=["ble:tag"], quantities=["signal_strength"])
    )
    assert [p.value for p in history.series[0].points] == [-70.5, -71.5, -72.5, -73.5, -60.0]
    buckets = await queries.ListReadings(
        query_pb2.ListReadingsRequest(
            device_id=device, quantities=["battery_level"], interval=Duration(seconds=3600)
        )
    )
    counted = [(b.count, b.min, b.max) for b in buckets.series[0].buckets]
    assert sum(c for c, _, _ in counted) == 4 and min(lo for _, lo, _ in counted) == 87.0


async def test_get_and_list_carry_each_devices_lowest_battery_and_weakest_signal(
    devices: device_pb2_grpc.DeviceServiceStub, writer: ReadingWriter
) -> None:
    await _register(writer, "pi-a", "pi-b", "pi-c")
    earlier = NOW - timedelta(minutes=5)
    await writer.write(
        "pi-a",
        [
            link_health("ble:tag-1", earlier, battery=80, rssi=-60),
            link_health("ble:tag-2", earlier, battery=23.1, rssi=-91),
            link_health("ble:tag-1", NOW, battery=79),  # tag-1's newest battery; its RSSI stays -60
        ],
    )
    await writer.write(
        "pi-b", [link_health("zigbee:plug", NOW, quality=80), link_health("ble:x", NOW, battery=55)]
    )
    await writer.write("pi-c", [imu("mpu6050-0x68", NOW)])

    listed = {d.device_id: d for d in (await devices.ListDevices(device_pb2.ListDevicesRequest())).devices}
    a = listed["pi-a"]
    assert (a.lowest_battery_level.sensor, a.lowest_battery_level.quantity) == ("ble:tag-2", "battery_level")
    assert (a.lowest_battery_level.value, a.lowest_battery_level.unit) == (
        23.1,
        "%",
    )  # as sent, not 23.100000381
    assert a.lowest_battery_level.sample_time.ToDatetime(tzinfo=UTC) == earlier
    assert (a.weakest_signal_strength.sensor, a.weakest_signal_strength.value) == ("ble:tag-2", -91.0)
    assert listed["pi-b"].lowest_battery_level.value == 55.0
    assert not listed["pi-b"].HasField("weakest_signal_strength")  # a link quality is no signal strength
    assert not listed["pi-c"].HasField("lowest_battery_level")
    assert not listed["pi-c"].HasField("weakest_signal_strength")

    got = await devices.GetDevice(device_pb2.GetDeviceRequest(device_id="pi-a"))
    assert got.device.lowest_battery_level == a.lowest_battery_level
    assert got.device.weakest_signal_strength == a.weakest_signal_strength


async def _all_pages(devices: device_pb2_grpc.DeviceServiceStub, order_by: str) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = await devices.ListDevices(
            device_pb2.ListDevicesRequest(page_size=2, page_token=token, order_by=order_by)
        )
        seen += [d.device_id for d in page.devices]
        token = page.next_page_token
        if not token:
            return seen


async def test_list_sorts_and_pages_by_the_extremes_with_devices_without_them_last(
    devices: device_pb2_grpc.DeviceServiceStub, writer: ReadingWriter
) -> None:
    batteries = {
        "pi-1": 40.0,
        "pi-2": 12.5,
        "pi-3": None,
        "pi-4": 40.0,
        "pi-5": 97.0,
        "pi-6": None,
        "pi-7": 12.5,
    }
    await _register(writer, *batteries)
    for device_id, battery in batteries.items():
        rssi = -50 - int(device_id[-1]) * 7  # pi-7 weakest
        await writer.write(device_id, [link_health("ble:tag", NOW, battery=battery, rssi=rssi)])

    by_battery = ["pi-2", "pi-7", "pi-1", "pi-4", "pi-5", "pi-3", "pi-6"]  # ties in id order, none last
    assert await _all_pages(devices, "lowest_battery_level.value") == by_battery
    assert await _all_pages(devices, " lowest_battery_level.value  desc ") == [
        "pi-5", "pi-1", "pi-4", "pi-2", "pi-7", "pi-3", "pi-6",
    ]  # fmt: skip
    assert await _all_pages(devices, "weakest_signal_strength.value") == [f"pi-{i}" for i in range(7, 0, -1)]
    assert await _all_pages(devices, "device_id desc") == [f"pi-{i}" for i in range(7, 0, -1)]
    assert await _all_pages(devices, "") == sorted(batteries)


async def test_a_bad_order_or_a_token_of_another_order_is_invalid_argument(
    devices: device_pb2_grpc.DeviceServiceStub, writer: ReadingWriter
) -> None:
    await _register(writer, "pi-1", "pi-2", "pi-3")
    for order_by in ("battery", "lowest_battery_level.value asc", "display_name", "device_id desc desc"):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await devices.ListDevices(device_pb2.ListDevicesRequest(order_by=order_by))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT, order_by
        assert "order_by" in field_violations(bad.value)

    first = await devices.ListDevices(
        device_pb2.ListDevicesRequest(page_size=1, order_by="lowest_battery_level.value")
    )
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await devices.ListDevices(
            device_pb2.ListDevicesRequest(page_size=1, page_token=first.next_page_token)
        )
    assert other.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(other.value)


async def test_a_live_feed_carries_link_health_live_and_in_its_replay(
    query_server: QueryServer, queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    earlier = NOW - timedelta(minutes=2)
    await writer.write(device, [link_health("ble:tag", earlier, battery=64.5, rssi=-77, volts=3.71)])
    feed = queries.WatchReadings(
        query_pb2.WatchReadingsRequest(
            device_id=device,
            quantities=["signal_strength"],
            start_time=Timestamp(seconds=int(earlier.timestamp()) - 1),
        )
    )
    replayed = await anext(aiter(feed))  # the replay comes first
    await wait_for(lambda: query_server.hub.subscriber_count == 1)
    await writer.write(device, [imu("ble:tag", NOW), link_health("ble:tag", NOW, quality=40)])
    await writer.write(device, [link_health("ble:tag", NOW + timedelta(seconds=1), rssi=-80.5)])
    live: list[reading_pb2.Reading] = []
    async with asyncio.timeout(20):
        async for message in feed:
            live += message.readings
            if live:
                break
    feed.cancel()

    [old] = replayed.readings
    assert (old.sensor, old.link_health.battery_level_percent, old.link_health.signal_strength_dbm) == (
        "ble:tag", 64.5, -77.0,
    )  # fmt: skip
    assert old.link_health.battery_voltage_volts == pytest.approx(3.71)
    assert not old.link_health.HasField("link_quality_percent")
    # Only readings carrying a signal strength pass the filter: not the IMU, not the link quality alone.
    assert [(r.WhichOneof("payload"), r.link_health.signal_strength_dbm) for r in live] == [
        ("link_health", -80.5)
    ]
