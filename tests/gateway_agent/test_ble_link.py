"""Link health of a BLE sensor at the bleak seam: the Battery Service's bytes, the RSSI of
advertisements, and reads that never disturb the data notifications."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_agent.inputs import ble_imu
from gateway_agent.inputs.ble_link import BATTERY_LEVEL_UUID, battery_level, usable_rssi
from gateway_agent.readings import Reading
from sensormesh_core.validation import validate
from tests.gateway_agent.fake_bleak import FakeBluetooth, FakeDevice
from tests.gateway_agent.support import until

ADDRESS = "C8:2B:96:A1:5E:0F"
SENSOR = f"ble:wt901-{ADDRESS}"
ONE_G = bytes([0x55, 0x61]) + struct.pack("<9h", 0, 0, 2048, 0, 0, 0, 0, 0, 0)


def test_battery_level_is_one_byte_of_percent_per_the_battery_service() -> None:
    assert battery_level(b"\x57") == 87
    assert battery_level(b"\x00") == 0 and battery_level(b"\x64") == 100
    assert battery_level(b"\x65") is None  # 101-255 are reserved
    assert battery_level(b"") is None


@given(st.binary(max_size=4))
def test_any_battery_bytes_give_a_percent_or_nothing(data: bytes) -> None:
    level = battery_level(data)
    assert level is None or 0 <= level <= 100


def test_rssi_outside_the_contract_or_bleaks_not_available_is_left_out() -> None:
    assert usable_rssi(-64) == -64 and usable_rssi(20) == 20 and usable_rssi(-126) == -126
    assert usable_rssi(-127) is None  # bleak: the adapter gave none
    assert usable_rssi(127) is None and usable_rssi(None) is None and usable_rssi(-200) is None


class Running:
    """A BLE IMU input streaming into a list, and its fake radio."""

    def __init__(self, bluetooth: FakeBluetooth, **options: object) -> None:
        self.bluetooth = bluetooth
        settings = ble_imu.Settings.validate({"address": ADDRESS, "health_interval": "50ms", **options})
        self.sensor = ble_imu.BleImu(
            settings,
            find_device=bluetooth.find_device,
            client_factory=bluetooth.client,
            watch=bluetooth.watch,
        )
        self.readings: list[Reading] = []

    def links(self) -> list[Reading]:
        return [r for r in self.readings if r.HasField("link_health")]

    def motion(self) -> list[Reading]:
        return [r for r in self.readings if r.HasField("imu")]


@contextlib.asynccontextmanager
async def running(bluetooth: FakeBluetooth, **options: object) -> AsyncIterator[Running]:
    run = Running(bluetooth, **options)
    task = asyncio.create_task(run.sensor.stream(run.readings.extend))
    try:
        await until(bluetooth.subscribed.is_set)
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_connection_reports_the_discovery_rssi_with_the_battery_then_the_battery_each_interval() -> (
    None
):
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", rssi=-71, battery=b"\x57")])
    async with running(bluetooth) as run:
        await until(lambda: len(run.links()) >= 3)
        run.bluetooth.clients[0].send(ONE_G)
    first, *later = run.links()
    assert first.sensor == SENSOR  # attributed to the sensor it describes, as its data
    assert (first.link_health.battery_level_percent, first.link_health.signal_strength_dbm) == (87, -71)
    for reading in later:  # no fresher RSSI without a watch: battery only
        assert reading.link_health.battery_level_percent == 87
        assert not reading.link_health.HasField("signal_strength_dbm")
    for reading in run.links():
        validate(reading)
    assert run.bluetooth.clients[0].reads[:3] == [BATTERY_LEVEL_UUID] * 3
    assert len(run.motion()) == 1


async def test_a_battery_read_that_hangs_does_not_hold_up_the_notifications() -> None:
    gate = asyncio.Event()
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", battery=b"\x2a")], read_gate=gate)
    async with running(bluetooth) as run:
        client = run.bluetooth.clients[0]
        await until(lambda: client.reads == [BATTERY_LEVEL_UUID])  # the read is outstanding
        for _ in range(5):
            client.send(ONE_G)
        assert len(run.motion()) == 5 and run.links() == []
        gate.set()
        await until(lambda: len(run.links()) >= 1)
    assert run.links()[0].link_health.battery_level_percent == 42


async def test_a_failing_battery_read_is_logged_and_the_link_stays_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bluetooth = FakeBluetooth(
        [FakeDevice(ADDRESS, "WT901BLE68", rssi=-80, battery=b"\x50")], read_error=OSError("ATT error 0x05")
    )
    async with running(bluetooth) as run:
        await until(lambda: len(run.bluetooth.clients[0].reads) >= 2)
        run.bluetooth.clients[0].send(ONE_G)
        assert not run.bluetooth.clients[0].disconnected
    assert "event=ble_battery_read_failed" in caplog.text and "ATT error 0x05" in caplog.text
    [link] = run.links()  # the discovery's RSSI still went out, on its own
    assert link.link_health.signal_strength_dbm == -80 and not link.link_health.HasField(
        "battery_level_percent"
    )
    assert len(run.motion()) == 1


async def test_a_sensor_without_the_battery_service_is_never_read_and_reports_its_signal_only() -> None:
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", rssi=-66, battery=None)])
    async with running(bluetooth) as run:
        await until(lambda: len(run.links()) >= 1)
        await asyncio.sleep(0.2)  # four more intervals: nothing new to say
    [link] = run.links()
    assert link.link_health.signal_strength_dbm == -66
    assert run.bluetooth.clients[0].reads == []


async def test_a_reserved_battery_value_is_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", rssi=-60, battery=b"\xff")])
    async with running(bluetooth) as run:
        await until(lambda: len(run.links()) >= 1)
    assert "event=ble_battery_level_invalid" in caplog.text and "bytes=ff" in caplog.text
    assert not run.links()[0].link_health.HasField("battery_level_percent")


async def test_watched_advertisements_give_each_report_the_newest_rssi_heard() -> None:
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", rssi=-127, battery=None)])
    async with running(bluetooth, watch_advertisements=True, health_interval="100ms") as run:
        await until(lambda: ADDRESS in run.bluetooth.watchers)
        await asyncio.sleep(0.02)
        assert run.links() == []  # the discovery's -127 is bleak's "no RSSI"
        for rssi in (-80, -84, 127, -127):  # the last two: not measurements
            run.bluetooth.advertise(ADDRESS, rssi)
        await until(lambda: len(run.links()) >= 1)
    assert [r.link_health.signal_strength_dbm for r in run.links()] == [-84]
    assert ADDRESS not in bluetooth.watchers  # the scan ends with the connection


async def test_a_health_interval_of_zero_reports_nothing() -> None:
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68", rssi=-60, battery=b"\x10")])
    async with running(bluetooth, health_interval="0s") as run:
        run.bluetooth.clients[0].send(ONE_G)
        await asyncio.sleep(0.1)
    assert run.links() == [] and run.bluetooth.clients[0].reads == [] and len(run.motion()) == 1
