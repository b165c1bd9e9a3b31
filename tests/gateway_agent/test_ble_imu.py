"""WT901BLE: the packet parser on datasheet values, and the connection logic at the bleak seam."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sensormesh.v1 import ingest_pb2

from gateway_agent.inputs import ble_imu
from gateway_agent.scheduler import Scheduler
from gateway_agent.status import StatusBoard
from sensormesh_core.telemetry import configure_telemetry
from tests.gateway_agent.fake_bleak import FakeBluetooth, FakeDevice
from tests.gateway_agent.support import Collector, until

G = 9.80665
ADDRESS = "C8:2B:96:A1:5E:0F"


def packet(
    acc: tuple[int, int, int], gyro: tuple[int, int, int], angle: tuple[int, int, int] = (0, 0, 0)
) -> bytes:
    return bytes([0x55, 0x61]) + struct.pack("<9h", *acc, *gyro, *angle)


def test_datasheet_scaling_of_a_packet() -> None:
    # Flat and still: Z reads 2048 = 1 g (16 g full scale); 0x4000 = half of ±2000 deg/s; 0x2000 = 45°.
    [p] = ble_imu.parse_packets(packet((0, -1024, 2048), (16384, -16384, 164), (8192, 0, -32768)))
    assert p.acceleration_mps2 == pytest.approx((0.0, -G / 2, G))
    assert p.angular_rate_dps == pytest.approx((1000.0, -1000.0, 10.009765625))
    assert p.angle_deg == pytest.approx((45.0, 0.0, -180.0))


def test_raw_notification_bytes_from_the_manual_layout() -> None:
    # 55 61 | 00 00 | 00 00 | 00 08 | 00 00 | 00 00 | 00 00 | ... : 1 g on Z, at rest, level.
    data = bytes.fromhex("5561" + "0000" + "0000" + "0008" + "0000" * 6)
    [p] = ble_imu.parse_packets(data)
    assert p.acceleration_mps2 == pytest.approx((0.0, 0.0, G))
    assert p.angular_rate_dps == (0.0, 0.0, 0.0)


def test_several_packets_register_replies_garbage_and_a_partial_tail() -> None:
    register_reply = bytes([0x55, 0x71]) + bytes(18)
    data = (
        b"\x00\x13"
        + packet((1, 2, 3), (4, 5, 6))
        + register_reply
        + packet((7, 8, 9), (0, 0, 0))
        + b"\x55\x61\x01"
    )
    packets = ble_imu.parse_packets(data)
    assert len(packets) == 2
    assert packets[1].acceleration_mps2[0] == pytest.approx(7 / 32768 * 16 * G)


@given(st.binary(max_size=200))
def test_parser_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert len(ble_imu.parse_packets(data)) <= len(data) // 20


@given(st.lists(st.integers(min_value=-32768, max_value=32767), min_size=9, max_size=9))
def test_any_packet_round_trips_within_the_contract_ranges(raw: list[int]) -> None:
    [p] = ble_imu.parse_packets(bytes([0x55, 0x61]) + struct.pack("<9h", *raw))
    assert all(abs(v) <= 16 * G for v in p.acceleration_mps2)
    assert all(abs(v) <= 2000 for v in p.angular_rate_dps)
    assert p.acceleration_mps2[0] == pytest.approx(raw[0] / 32768 * 16 * G)


def test_address_or_name_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one of address and device_name"):
        ble_imu.Settings()


async def test_streams_readings_and_reconnects_with_growing_backoff_when_the_link_drops() -> None:
    bluetooth = FakeBluetooth([FakeDevice(ADDRESS, "WT901BLE68")])
    sensor = ble_imu.BleImu(
        ble_imu.Settings(address=ADDRESS), find_device=bluetooth.find_device, client_factory=bluetooth.client
    )
    collector, board = Collector(), StatusBoard()
    scheduler = Scheduler(
        [sensor], collector, board, configure_telemetry("t", set_global=False).meter("t"),
        retry_initial=0.02, retry_max=1.0,
    )  # fmt: skip
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: bluetooth.subscribed.is_set())
        first = bluetooth.clients[0]
        assert first.uuid == "0000ffe4-0000-1000-8000-00805f9a34fb"
        first.send(packet((0, 0, 2048), (0, 0, 0)) + packet((2048, 0, 0), (0, 0, 0)))
        motion = [r for r in collector.readings[sensor.name] if r.HasField("imu")]
        assert [r.imu.acceleration_z_mps2 for r in motion] == pytest.approx([G, 0.0])
        assert motion[0].sensor == f"ble:wt901-{ADDRESS}"

        # The sensor goes out of range: the link drops and three scans find nothing.
        bluetooth.in_range = False
        bluetooth.subscribed.clear()
        first.drop_link()
        await until(lambda: len(bluetooth.scans) >= 4)
        _, statuses = board.changed_since(0)
        assert statuses[0].state == ingest_pb2.INPUT_STATE_FAILING
        bluetooth.in_range = True
        await until(lambda: bluetooth.subscribed.is_set())
        bluetooth.clients[-1].send(packet((0, 0, 1024), (0, 0, 0)))
        motion = [r for r in collector.readings[sensor.name] if r.HasField("imu")]
        assert motion[-1].imu.acceleration_z_mps2 == pytest.approx(G / 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert first.disconnected
    _, statuses = board.changed_since(0)
    assert statuses[0].state == ingest_pb2.INPUT_STATE_OK
    # Exponential backoff: the waits between failed attempts never shrink and at least double overall.
    waits = [b - a for a, b in itertools.pairwise(bluetooth.scans[1:])]
    assert all(later >= earlier * 0.9 for earlier, later in itertools.pairwise(waits))
    assert waits[-1] >= 2 * waits[0] * 0.9
