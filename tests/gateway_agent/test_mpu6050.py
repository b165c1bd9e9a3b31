"""MPU-6050 driver against register values from the register map (rev 4.2)."""

from __future__ import annotations

import pytest

from gateway_agent.inputs import mpu6050
from gateway_agent.inputs.base import InputError
from tests.gateway_agent.fake_smbus import FakeSMBus, big_endian_words

G = 9.80665


def registers(words: list[int], who_am_i: int = 0x68) -> dict[int, int]:
    # After power-on PWR_MGMT_1 is 0x40: asleep (section 4.28).
    return {mpu6050.REG_WHO_AM_I: who_am_i, mpu6050.REG_PWR_MGMT_1: 0x40} | big_endian_words(0x3B, words)


async def test_wakes_the_chip_and_sets_the_configured_ranges() -> None:
    bus = FakeSMBus({0x69: registers([0] * 7)})
    sensor = mpu6050.Mpu6050(
        mpu6050.Settings(address=0x69, accel_range_g=8, gyro_range_dps=1000, dlpf=2),
        bus_factory=lambda _bus: bus,
    )
    await sensor.open()
    regs = bus.registers[0x69]
    assert regs[0x6B] == 0x01  # SLEEP cleared, PLL with X gyro reference
    assert regs[0x1C] == 2 << 3  # AFS_SEL=2: ±8 g
    assert regs[0x1B] == 2 << 3  # FS_SEL=2: ±1000 deg/s
    assert regs[0x1A] == 2


@pytest.mark.parametrize(("range_g", "lsb_per_g"), [(2, 16384), (4, 8192), (8, 4096), (16, 2048)])
async def test_acceleration_is_converted_to_metres_per_second_squared(range_g: int, lsb_per_g: int) -> None:
    # One g on Z (sensor flat), half a g on X, minus a quarter on Y.
    words = [lsb_per_g // 2, -lsb_per_g // 4, lsb_per_g, 0, 0, 0, 0]
    bus = FakeSMBus({0x68: registers(words)})
    sensor = mpu6050.Mpu6050(mpu6050.Settings(accel_range_g=range_g), bus_factory=lambda _bus: bus)  # type: ignore[arg-type]
    await sensor.open()
    [reading] = await sensor.read()
    assert reading.sensor == "mpu6050-0x68"
    assert reading.imu.acceleration_x_mps2 == pytest.approx(G / 2, rel=1e-6)
    assert reading.imu.acceleration_y_mps2 == pytest.approx(-G / 4, rel=1e-6)
    assert reading.imu.acceleration_z_mps2 == pytest.approx(G, rel=1e-6)


@pytest.mark.parametrize(
    ("range_dps", "lsb_per_dps"), [(250, 131.0), (500, 65.5), (1000, 32.8), (2000, 16.4)]
)
async def test_angular_rate_is_converted_to_degrees_per_second(range_dps: int, lsb_per_dps: float) -> None:
    raw_x, raw_y, raw_z = 13100, -6550, 32767
    bus = FakeSMBus({0x68: registers([0, 0, 0, 1234, raw_x, raw_y, raw_z])})
    sensor = mpu6050.Mpu6050(mpu6050.Settings(gyro_range_dps=range_dps), bus_factory=lambda _bus: bus)  # type: ignore[arg-type]
    await sensor.open()
    [reading] = await sensor.read()
    assert reading.imu.angular_rate_x_dps == pytest.approx(raw_x / lsb_per_dps, rel=1e-6)
    assert reading.imu.angular_rate_y_dps == pytest.approx(raw_y / lsb_per_dps, rel=1e-6)
    assert reading.imu.angular_rate_z_dps == pytest.approx(raw_z / lsb_per_dps, rel=1e-6)


def test_most_negative_word_is_full_scale() -> None:
    acceleration, angular_rate = mpu6050.convert([0x80, 0x00] * 7, 16384.0, 131.0)
    assert acceleration[0] == pytest.approx(-2 * G)
    assert angular_rate[0] == pytest.approx(-32768 / 131.0)


async def test_wrong_device_is_refused() -> None:
    bus = FakeSMBus({0x68: registers([0] * 7, who_am_i=0x71)})  # an MPU-9250 answers 0x71
    sensor = mpu6050.Mpu6050(mpu6050.Settings(), bus_factory=lambda _bus: bus)
    with pytest.raises(InputError, match="WHO_AM_I 0x71"):
        await sensor.open()


async def test_missing_device_raises_the_bus_error() -> None:
    bus = FakeSMBus({})
    sensor = mpu6050.Mpu6050(mpu6050.Settings(), bus_factory=lambda _bus: bus)
    with pytest.raises(OSError, match="Remote I/O"):
        await sensor.open()
