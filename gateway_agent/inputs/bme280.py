"""Bosch BME280 (and BMP280) temperature, humidity and pressure over I2C.

Wiring (Raspberry Pi): VIN to 3V3 (pin 1), GND to pin 6, SDA to GPIO2
(pin 3), SCL to GPIO3 (pin 5); enable I2C (`raspi-config nonint do_i2c 0`),
the sensor appears on bus 1. SDO low gives address 0x76, SDO high 0x77
(most breakout boards pull it high: try 0x77 first if 0x76 is not found).

How it reads (datasheet BST-BME280-DS002): checks the chip id (register 0xD0
is 0x60; 0x58 is a BMP280, read without humidity), reads the trimming
parameters (section 4.2.2, table 16: calib00..25 at 0x88-0xA1, calib26..41 at
0xE1-0xF0), then for each reading triggers one measurement in forced mode
(section 3.3.3) with the configured oversampling (ctrl_hum 0xF2 must be
written before ctrl_meas 0xF4 to take effect, section 5.4.3), waits the
maximum measurement time (appendix 9.1) and until status 0xF3 bit 3 clears,
burst-reads 0xF7-0xFE (section 4: one burst keeps the three values from the
same conversion) and compensates with Bosch's integer formulas (section 4.2.3
and appendix 8.2): 32-bit for temperature and humidity, 64-bit for pressure.
Forced mode keeps the sensor asleep between reads (section 3.5.1, weather
monitoring: 1 read per interval, x1 oversampling, filter off).

Units: temperature °C (0.01 resolution), relative humidity % (1/1024),
pressure hPa (the formula's Pa/256 divided by 100).

Sample config:

    [[inputs.bme280]]
      ## I2C bus number: /dev/i2c-1 on a Raspberry Pi.
      # bus = 1
      ## I2C address: 0x76 (SDO low) or 0x77 (SDO high).
      # address = 0x76
      ## Oversampling per quantity: 1, 2, 4, 8 or 16; 0 skips pressure or humidity.
      # oversampling_temperature = 1
      # oversampling_pressure = 1
      # oversampling_humidity = 1
      ## IIR filter coefficient: 0 (off), 2, 4, 8 or 16 (section 3.4.4).
      # iir_filter = 0
      ## Sensor name in readings; default "bme280-0x76" (from the address).
      # sensor = "bme280-0x76"
      ## Time between reads.
      # interval = "1s"
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from msgspec import Meta

from gateway_agent.inputs.base import InputError, InputSettings
from gateway_agent.inputs.i2c import BusFactory, I2CBus, smbus_factory
from gateway_agent.readings import Reading, environment, now_ns

REG_CHIP_ID = 0xD0
REG_CALIB00 = 0x88  # calib00..calib25: dig_T1..dig_P9, then dig_H1 at 0xA1
REG_CALIB26 = 0xE1  # calib26..calib32: dig_H2..dig_H6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_PRESS_MSB = 0xF7  # press (3), temp (3), hum (2): 0xF7..0xFE

CHIP_ID_BME280 = 0x60
CHIP_ID_BMP280 = 0x58
MODE_FORCED = 0b01
STATUS_MEASURING = 0x08
SKIPPED_20BIT = 0x80000  # the value of a skipped pressure or temperature (section 5.4.7)
SKIPPED_16BIT = 0x8000

_OVERSAMPLING_CODE = {0: 0b000, 1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}
_FILTER_CODE = {0: 0b000, 2: 0b001, 4: 0b010, 8: 0b011, 16: 0b100}
Oversampling = Literal[0, 1, 2, 4, 8, 16]


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one BME280."""

    bus: Annotated[int, Meta(ge=0, description="I2C bus number (/dev/i2c-N).")] = 1
    address: Annotated[Literal[0x76, 0x77], Meta(description="0x76 (SDO low) or 0x77 (SDO high).")] = 0x76
    oversampling_temperature: Literal[1, 2, 4, 8, 16] = 1
    oversampling_pressure: Oversampling = 1
    oversampling_humidity: Oversampling = 1
    iir_filter: Literal[0, 2, 4, 8, 16] = 0
    sensor: Annotated[str, Meta(description='Sensor name; default "bme280-0x76".')] | None = None


@dataclass(frozen=True)
class Calibration:
    """The trimming parameters, named as in the datasheet's table 16."""

    dig_t1: int
    dig_t2: int
    dig_t3: int
    dig_p1: int
    dig_p2: int
    dig_p3: int
    dig_p4: int
    dig_p5: int
    dig_p6: int
    dig_p7: int
    dig_p8: int
    dig_p9: int
    dig_h1: int = 0
    dig_h2: int = 0
    dig_h3: int = 0
    dig_h4: int = 0
    dig_h5: int = 0
    dig_h6: int = 0


def _u16(block: Sequence[int], i: int) -> int:
    return block[i] | (block[i + 1] << 8)  # trimming words are little-endian


def _s16(block: Sequence[int], i: int) -> int:
    value = _u16(block, i)
    return value - 0x10000 if value & 0x8000 else value


def _s12(value: int) -> int:
    return value - 0x1000 if value & 0x800 else value


def parse_calibration(calib00: Sequence[int], calib26: Sequence[int] | None) -> Calibration:
    """Decode calib00..25 (26 bytes from 0x88) and calib26..32 (7 bytes from 0xE1; None for a BMP280)."""
    c = calib00
    temperature_pressure = {
        "dig_t1": _u16(c, 0), "dig_t2": _s16(c, 2), "dig_t3": _s16(c, 4),
        "dig_p1": _u16(c, 6), "dig_p2": _s16(c, 8), "dig_p3": _s16(c, 10),
        "dig_p4": _s16(c, 12), "dig_p5": _s16(c, 14), "dig_p6": _s16(c, 16),
        "dig_p7": _s16(c, 18), "dig_p8": _s16(c, 20), "dig_p9": _s16(c, 22),
    }  # fmt: skip
    if calib26 is None:
        return Calibration(**temperature_pressure)
    e4, e5, e6, h6 = calib26[3], calib26[4], calib26[5], calib26[6]
    return Calibration(
        **temperature_pressure,
        dig_h1=c[25],
        dig_h2=_s16(calib26, 0),
        dig_h3=calib26[2],
        # dig_H4 and dig_H5 share 0xE5: H4 = E4[11:4] E5[3:0], H5 = E6[11:4] E5[7:4] (table 16)
        dig_h4=_s12((e4 << 4) | (e5 & 0x0F)),
        dig_h5=_s12((e6 << 4) | (e5 >> 4)),
        dig_h6=h6 - 0x100 if h6 & 0x80 else h6,
    )


def _c_div(a: int, b: int) -> int:
    """C's integer division, which truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def compensate_temperature(adc_t: int, cal: Calibration) -> tuple[int, int]:
    """Section 4.2.3: temperature in 0.01 °C and t_fine (which pressure and humidity need)."""
    var1 = (((adc_t >> 3) - (cal.dig_t1 << 1)) * cal.dig_t2) >> 11
    var2 = (((((adc_t >> 4) - cal.dig_t1) * ((adc_t >> 4) - cal.dig_t1)) >> 12) * cal.dig_t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_pressure(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Section 4.2.3, 64-bit version: pressure in Pa as Q24.8 (divide by 256); 0 if undefined."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.dig_p6
    var2 = var2 + ((var1 * cal.dig_p5) << 17)
    var2 = var2 + (cal.dig_p4 << 35)
    var1 = ((var1 * var1 * cal.dig_p3) >> 8) + ((var1 * cal.dig_p2) << 12)
    var1 = (((1 << 47) + var1) * cal.dig_p1) >> 33
    if var1 == 0:
        return 0  # avoids a division by zero (datasheet)
    p = 1048576 - adc_p
    p = _c_div(((p << 31) - var2) * 3125, var1)
    var1 = (cal.dig_p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.dig_p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.dig_p7 << 4)


def compensate_humidity(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Section 4.2.3: relative humidity in %RH as Q22.10 (divide by 1024), clamped to 0..100 %."""
    x = t_fine - 76800
    a = ((adc_h << 14) - (cal.dig_h4 << 20) - cal.dig_h5 * x + 16384) >> 15
    b = (
        (((((x * cal.dig_h6) >> 10) * (((x * cal.dig_h3) >> 11) + 32768)) >> 10) + 2097152) * cal.dig_h2
        + 8192
    ) >> 14
    v = a * b
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.dig_h1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def measurement_time_s(os_t: int, os_p: int, os_h: int) -> float:
    """Appendix 9.1: the maximum time of one forced measurement, in seconds."""
    ms = 1.25 + 2.3 * os_t
    ms += 2.3 * os_p + 0.575 if os_p else 0.0
    ms += 2.3 * os_h + 0.575 if os_h else 0.0
    return ms / 1000.0


class Bme280:
    """One BME280 (or BMP280) on an I2C bus, read in forced mode."""

    def __init__(self, settings: Settings, bus_factory: BusFactory = smbus_factory) -> None:
        self.settings = settings
        self.sensor = settings.sensor or f"bme280-0x{settings.address:02x}"
        self.name = settings.name or self.sensor
        self.interval = settings.interval
        self._bus_factory = bus_factory
        self._bus: I2CBus | None = None
        self._calibration: Calibration | None = None
        self._has_humidity = True

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
        chip_id = bus.read_byte_data(address, REG_CHIP_ID)
        if chip_id not in (CHIP_ID_BME280, CHIP_ID_BMP280):
            bus.close()
            raise InputError(
                f"no BME280 at 0x{address:02x} on bus {self.settings.bus}: chip id 0x{chip_id:02x}, expected 0x60"
            )
        self._has_humidity = chip_id == CHIP_ID_BME280
        calib00 = bus.read_i2c_block_data(address, REG_CALIB00, 26)
        calib26 = bus.read_i2c_block_data(address, REG_CALIB26, 7) if self._has_humidity else None
        self._calibration = parse_calibration(calib00, calib26)
        filter_code = _FILTER_CODE[self.settings.iir_filter]
        bus.write_byte_data(address, REG_CONFIG, filter_code << 2)
        self._bus = bus

    def _trigger(self, bus: I2CBus) -> None:
        s = self.settings
        os_h = s.oversampling_humidity if self._has_humidity else 0
        if self._has_humidity:
            bus.write_byte_data(s.address, REG_CTRL_HUM, _OVERSAMPLING_CODE[os_h])
        ctrl_meas = (
            (_OVERSAMPLING_CODE[s.oversampling_temperature] << 5)
            | (_OVERSAMPLING_CODE[s.oversampling_pressure] << 2)
            | MODE_FORCED
        )
        bus.write_byte_data(s.address, REG_CTRL_MEAS, ctrl_meas)
        # The conversion takes a known maximum time; waiting it out in this
        # worker thread costs the event loop nothing.
        time.sleep(measurement_time_s(s.oversampling_temperature, s.oversampling_pressure, os_h))
        deadline = time.monotonic() + 0.1
        while bus.read_byte_data(s.address, REG_STATUS) & STATUS_MEASURING:
            if time.monotonic() > deadline:
                raise InputError(f"BME280 at 0x{s.address:02x} still measuring after its maximum time")
            time.sleep(0.001)

    def _read(self) -> Reading:
        if self._bus is None or self._calibration is None:
            raise InputError("BME280 read before open")
        bus, cal = self._bus, self._calibration
        self._trigger(bus)
        length = 8 if self._has_humidity else 6
        data = bus.read_i2c_block_data(self.settings.address, REG_PRESS_MSB, length)
        sample_time = now_ns()
        adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
        adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
        if adc_t == SKIPPED_20BIT:
            raise InputError("BME280 returned no temperature (measurement skipped)")
        centi_celsius, t_fine = compensate_temperature(adc_t, cal)
        pressure_hpa = None
        if adc_p != SKIPPED_20BIT and self.settings.oversampling_pressure:
            pressure_hpa = compensate_pressure(adc_p, t_fine, cal) / 256.0 / 100.0
        humidity = None
        if self._has_humidity and self.settings.oversampling_humidity:
            adc_h = (data[6] << 8) | data[7]
            if adc_h != SKIPPED_16BIT:
                humidity = compensate_humidity(adc_h, t_fine, cal) / 1024.0
        return environment(self.sensor, sample_time, centi_celsius / 100.0, humidity, pressure_hpa)


def create(settings: Settings) -> Bme280:
    return Bme280(settings)
