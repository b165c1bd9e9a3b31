"""BME280 driver against Bosch's published compensation example and register dumps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_agent.inputs import bme280
from gateway_agent.inputs.base import InputError
from tests.gateway_agent.fake_smbus import FakeSMBus, little_endian_words

# Bosch's worked example (BMP280 datasheet BST-BMP280-DS001 section 3.12; the BME280
# uses the same temperature and pressure formulas, BST-BME280-DS002 section 4.2.3):
# these trimming words with adc_T = 519888 and adc_P = 415148 give t_fine = 128422,
# T = 25.08 °C and p = 100653.27 Pa.
EXAMPLE_TP = [27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000]
ADC_T, ADC_P = 519888, 415148
# Humidity trimming of a production BME280 (a register dump of calib26..32 and 0xA1).
H1, H2, H3, H4, H5, H6 = 75, 362, 0, 313, 50, 30
EXAMPLE = bme280.Calibration(*EXAMPLE_TP, dig_h1=H1, dig_h2=H2, dig_h3=H3, dig_h4=H4, dig_h5=H5, dig_h6=H6)


def bme280_registers(
    adc_t: int = ADC_T, adc_p: int = ADC_P, adc_h: int = 30000, chip_id: int = 0x60
) -> dict[int, int]:
    regs = {bme280.REG_CHIP_ID: chip_id, 0xA1: H1}
    regs |= little_endian_words(bme280.REG_CALIB00, EXAMPLE_TP)
    regs |= little_endian_words(0xE1, [H2])
    # dig_H4 = 0xE4[11:4] 0xE5[3:0]; dig_H5 = 0xE6[11:4] 0xE5[7:4] (table 16)
    regs |= {0xE3: H3, 0xE4: H4 >> 4, 0xE5: (H4 & 0x0F) | ((H5 & 0x0F) << 4), 0xE6: H5 >> 4, 0xE7: H6}
    regs |= {
        0xF7: adc_p >> 12, 0xF8: (adc_p >> 4) & 0xFF, 0xF9: (adc_p & 0x0F) << 4,
        0xFA: adc_t >> 12, 0xFB: (adc_t >> 4) & 0xFF, 0xFC: (adc_t & 0x0F) << 4,
        0xFD: adc_h >> 8, 0xFE: adc_h & 0xFF,
    }  # fmt: skip
    return regs


def float_humidity(adc_h: int, t_fine: int, c: bme280.Calibration) -> float:
    """Bosch's double-precision humidity formula (datasheet appendix 8.1), for comparison."""
    var_h = t_fine - 76800.0
    var_h = (adc_h - (c.dig_h4 * 64.0 + c.dig_h5 / 16384.0 * var_h)) * (
        c.dig_h2 / 65536.0 * (1.0 + c.dig_h6 / 67108864.0 * var_h * (1.0 + c.dig_h3 / 67108864.0 * var_h))
    )
    var_h = var_h * (1.0 - c.dig_h1 * var_h / 524288.0)
    return min(max(var_h, 0.0), 100.0)


def test_bosch_example_temperature_and_t_fine() -> None:
    centi_celsius, t_fine = bme280.compensate_temperature(ADC_T, EXAMPLE)
    assert t_fine == 128422
    assert centi_celsius == 2508


def test_bosch_example_pressure() -> None:
    _, t_fine = bme280.compensate_temperature(ADC_T, EXAMPLE)
    pascal = bme280.compensate_pressure(ADC_P, t_fine, EXAMPLE) / 256.0
    assert pascal == pytest.approx(100653.27, abs=0.05)


@given(
    adc_h=st.integers(min_value=15000, max_value=45000), adc_t=st.integers(min_value=400000, max_value=600000)
)
def test_integer_humidity_matches_bosch_floating_point_formula(adc_h: int, adc_t: int) -> None:
    _, t_fine = bme280.compensate_temperature(adc_t, EXAMPLE)
    integer = bme280.compensate_humidity(adc_h, t_fine, EXAMPLE) / 1024.0
    assert 0.0 <= integer <= 100.0
    assert integer == pytest.approx(float_humidity(adc_h, t_fine, EXAMPLE), abs=0.05)


def test_calibration_block_is_decoded_from_registers() -> None:
    regs = bme280_registers()
    calib00 = [regs.get(0x88 + i, 0) for i in range(26)]
    calib26 = [regs.get(0xE1 + i, 0) for i in range(7)]
    assert bme280.parse_calibration(calib00, calib26) == EXAMPLE


async def test_reads_register_dump_in_forced_mode_with_configured_oversampling() -> None:
    bus = FakeSMBus({0x77: bme280_registers()})
    settings = bme280.Settings(
        address=0x77,
        oversampling_temperature=2,
        oversampling_pressure=16,
        oversampling_humidity=4,
        iir_filter=4,
    )
    sensor = bme280.Bme280(settings, bus_factory=lambda _bus: bus)
    await sensor.open()
    [reading] = await sensor.read()

    assert reading.sensor == "bme280-0x77"
    env = reading.environment
    assert env.temperature_celsius == pytest.approx(25.08)
    assert env.pressure_hpa == pytest.approx(1006.5327, abs=0.0005)
    assert env.relative_humidity_percent == pytest.approx(float_humidity(30000, 128422, EXAMPLE), abs=0.05)
    writes = [(reg, value) for _, reg, value in bus.writes]
    # ctrl_hum before ctrl_meas (section 5.4.3); osrs_t x2=010, osrs_p x16=101, forced=01; filter 4=010
    assert writes.index((0xF2, 0b011)) < writes.index((0xF4, 0b010_101_01))
    assert (0xF5, 0b010 << 2) in writes
    await sensor.close()
    assert bus.closed


async def test_bmp280_is_read_without_humidity() -> None:
    bus = FakeSMBus({0x76: bme280_registers(chip_id=0x58)})
    sensor = bme280.Bme280(bme280.Settings(), bus_factory=lambda _bus: bus)
    await sensor.open()
    [reading] = await sensor.read()
    assert reading.environment.temperature_celsius == pytest.approx(25.08)
    assert not reading.environment.HasField("relative_humidity_percent")
    assert all(reg != 0xF2 for _, reg, _ in bus.writes)


async def test_wrong_chip_id_is_refused_with_the_id_found() -> None:
    bus = FakeSMBus({0x76: bme280_registers(chip_id=0x55)})
    sensor = bme280.Bme280(bme280.Settings(), bus_factory=lambda _bus: bus)
    with pytest.raises(InputError, match="chip id 0x55, expected 0x60"):
        await sensor.open()
    assert bus.closed


async def test_skipped_pressure_is_left_absent() -> None:
    bus = FakeSMBus({0x76: bme280_registers(adc_p=0x80000)})
    sensor = bme280.Bme280(bme280.Settings(oversampling_pressure=0), bus_factory=lambda _bus: bus)
    await sensor.open()
    [reading] = await sensor.read()
    assert not reading.environment.HasField("pressure_hpa")
    assert (0xF4, 0b001_000_01) in [(reg, value) for _, reg, value in bus.writes]


def test_address_must_be_0x76_or_0x77() -> None:
    with pytest.raises(ValueError, match="address: Invalid enum value 64; expected 118 or 119"):
        bme280.Settings.validate({"address": 0x40})
