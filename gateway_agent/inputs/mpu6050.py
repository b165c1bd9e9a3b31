"""InvenSense MPU-6050 accelerometer and gyroscope over I2C.

Wiring (Raspberry Pi): VCC to 3V3 (pin 1), GND to pin 6, SDA to GPIO2
(pin 3), SCL to GPIO3 (pin 5); bus 1. AD0 low gives address 0x68, AD0 high
0x69 (two sensors on one bus).

How it reads (MPU-6000/MPU-6050 Register Map and Descriptions, rev 4.2):
checks WHO_AM_I (0x75, section 4.32: 0x68 whatever AD0 is), wakes the chip
by clearing SLEEP in PWR_MGMT_1 (0x6B, section 4.28) and selecting the X
gyro PLL as clock (the datasheet recommends it over the internal 8 MHz
oscillator), sets the digital low-pass filter (CONFIG 0x1A, section 4.3),
the gyroscope range (GYRO_CONFIG 0x1B FS_SEL, section 4.4) and the
accelerometer range (ACCEL_CONFIG 0x1C AFS_SEL, section 4.5), then burst-reads
the 14 bytes from ACCEL_XOUT_H (0x3B) to GYRO_ZOUT_L (0x48) (sections
4.17-4.19) in one transaction so all six axes come from the same sample.

Units: acceleration in m/s² (raw / LSB-per-g × 9.80665, gravity included),
angular rate in deg/s (raw / LSB-per-deg/s). Sensitivities per range from
sections 4.4 and 4.5: ±2/4/8/16 g -> 16384/8192/4096/2048 LSB/g;
±250/500/1000/2000 deg/s -> 131/65.5/32.8/16.4 LSB/(deg/s).

Sample config:

    [[inputs.mpu6050]]
      ## I2C bus number: /dev/i2c-1 on a Raspberry Pi.
      # bus = 1
      ## I2C address: 0x68 (AD0 low) or 0x69 (AD0 high).
      # address = 0x68
      ## Accelerometer full scale in g: 2, 4, 8 or 16.
      # accel_range_g = 2
      ## Gyroscope full scale in deg/s: 250, 500, 1000 or 2000.
      # gyro_range_dps = 250
      ## Digital low-pass filter, DLPF_CFG 0-6 (0: 260 Hz accel bandwidth; 3: 44 Hz).
      # dlpf = 3
      ## Sensor name in readings; default "mpu6050-0x68" (from the address).
      # sensor = "mpu6050-0x68"
      ## Time between reads: "10ms" for 100 Hz.
      # interval = "10ms"
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Literal

from msgspec import Meta

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import InputError, InputSettings
from gateway_agent.inputs.i2c import BusFactory, I2CBus, signed16, smbus_factory
from gateway_agent.readings import Reading, imu, now_ns

REG_CONFIG = 0x1A
REG_GYRO_CONFIG = 0x1B
REG_ACCEL_CONFIG = 0x1C
REG_ACCEL_XOUT_H = 0x3B  # ACCEL_XOUT_H .. GYRO_ZOUT_L: 14 bytes, TEMP_OUT in the middle
REG_PWR_MGMT_1 = 0x6B
REG_WHO_AM_I = 0x75

WHO_AM_I_MPU6050 = 0x68
CLKSEL_PLL_X_GYRO = 0x01  # PWR_MGMT_1 with SLEEP (bit 6) cleared
STANDARD_GRAVITY = 9.80665  # m/s² per g

ACCEL_FS_SEL = {2: (0, 16384.0), 4: (1, 8192.0), 8: (2, 4096.0), 16: (3, 2048.0)}
GYRO_FS_SEL = {250: (0, 131.0), 500: (1, 65.5), 1000: (2, 32.8), 2000: (3, 16.4)}


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one MPU-6050."""

    bus: Annotated[int, Meta(ge=0, description="I2C bus number (/dev/i2c-N).")] = 1
    address: Annotated[Literal[0x68, 0x69], Meta(description="0x68 (AD0 low) or 0x69 (AD0 high).")] = 0x68
    accel_range_g: Literal[2, 4, 8, 16] = 2
    gyro_range_dps: Literal[250, 500, 1000, 2000] = 250
    dlpf: Annotated[int, Meta(ge=0, le=6, description="DLPF_CFG (section 4.3).")] = 3
    sensor: Annotated[str, Meta(description='Sensor name; default "mpu6050-0x68".')] | None = None
    interval: Annotated[Duration, Meta(description="Time between reads.")] = Duration(milliseconds=10)


def convert(
    raw: Sequence[int], accel_lsb_per_g: float, gyro_lsb_per_dps: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Sections 4.17-4.19: the 14-byte burst -> (acceleration m/s², angular rate deg/s)."""
    words = [signed16(raw[i], raw[i + 1]) for i in range(0, 14, 2)]
    ax, ay, az, _temperature, gx, gy, gz = words
    scale = STANDARD_GRAVITY / accel_lsb_per_g
    return (ax * scale, ay * scale, az * scale), (
        gx / gyro_lsb_per_dps,
        gy / gyro_lsb_per_dps,
        gz / gyro_lsb_per_dps,
    )


class Mpu6050:
    """One MPU-6050 on an I2C bus, polled."""

    def __init__(self, settings: Settings, bus_factory: BusFactory = smbus_factory) -> None:
        self.settings = settings
        self.sensor = settings.sensor or f"mpu6050-0x{settings.address:02x}"
        self.name = settings.name or self.sensor
        self.interval = settings.interval
        self._bus_factory = bus_factory
        self._bus: I2CBus | None = None
        self._accel_fs, self._accel_lsb = ACCEL_FS_SEL[settings.accel_range_g]
        self._gyro_fs, self._gyro_lsb = GYRO_FS_SEL[settings.gyro_range_dps]

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def read(self) -> Sequence[Reading]:
        return [await asyncio.to_thread(self._read)]

    async def close(self) -> None:
        if self._bus is not None:
            bus, self._bus = self._bus, None
            await asyncio.to_thread(bus.close)

    def _open(self) -> None:
        bus = self._bus_factory(self.settings.bus)
        address = self.settings.address
        who_am_i = bus.read_byte_data(address, REG_WHO_AM_I)
        if who_am_i & 0x7E != WHO_AM_I_MPU6050:  # bits 6:1 hold the address' upper six bits
            bus.close()
            raise InputError(
                f"no MPU-6050 at 0x{address:02x} on bus {self.settings.bus}: WHO_AM_I 0x{who_am_i:02x}, expected 0x68"
            )
        bus.write_byte_data(address, REG_PWR_MGMT_1, CLKSEL_PLL_X_GYRO)
        bus.write_byte_data(address, REG_CONFIG, self.settings.dlpf)
        bus.write_byte_data(address, REG_GYRO_CONFIG, self._gyro_fs << 3)
        bus.write_byte_data(address, REG_ACCEL_CONFIG, self._accel_fs << 3)
        self._bus = bus

    def _read(self) -> Reading:
        if self._bus is None:
            raise InputError("MPU-6050 read before open")
        raw = self._bus.read_i2c_block_data(self.settings.address, REG_ACCEL_XOUT_H, 14)
        sample_time = now_ns()
        acceleration, angular_rate = convert(raw, self._accel_lsb, self._gyro_lsb)
        return imu(self.sensor, sample_time, acceleration, angular_rate)


def create(settings: Settings) -> Mpu6050:
    return Mpu6050(settings)
