"""The simulator: reproducible, realistic ranges, one reading kind per instance."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator

import pytest

from gateway_agent.inputs import simulated
from sensormesh_core.validation import validate

DAY0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def ticks(start_ns: int, step_ns: int) -> Iterator[int]:
    t = start_ns
    while True:
        yield t
        t += step_ns


def make(kind: str, seed: int = 1, start_ns: int = DAY0_NS, step_ns: int = 10_000_000) -> simulated.Simulated:
    clock = ticks(start_ns, step_ns)
    return simulated.Simulated(simulated.Settings(kind=kind, seed=seed), clock=lambda: next(clock))  # type: ignore[arg-type]


async def take(sensor: simulated.Simulated, n: int) -> list[simulated.Reading]:
    out = []
    for _ in range(n):
        out.extend(await sensor.read())
    return out


async def test_same_seed_gives_the_same_readings_and_another_seed_does_not() -> None:
    a, b, c = [await take(make("imu", seed), 50) for seed in (7, 7, 8)]
    assert [r.SerializeToString() for r in a] == [r.SerializeToString() for r in b]
    assert [r.SerializeToString() for r in a] != [r.SerializeToString() for r in c]


async def test_imu_at_rest_measures_gravity_with_vibration_and_noise() -> None:
    readings = await take(make("imu"), 1000)  # 10 s at 100 Hz
    z = [r.imu.acceleration_z_mps2 for r in readings]
    assert statistics.fmean(z) == pytest.approx(9.80665, abs=0.05)
    assert 0.2 < statistics.pstdev(z) < 0.5  # the 0.4 m/s² vibration plus noise
    assert all(abs(r.imu.angular_rate_z_dps) < 2 for r in readings)
    assert readings[1].sample_time.ToNanoseconds() - readings[0].sample_time.ToNanoseconds() == 10_000_000


async def test_environment_follows_a_daily_cycle() -> None:
    hour_ns = 3600 * 10**9
    afternoon = (await take(make("environment", start_ns=DAY0_NS + 15 * hour_ns), 1))[0].environment
    night = (await take(make("environment", start_ns=DAY0_NS + 3 * hour_ns), 1))[0].environment
    assert afternoon.temperature_celsius - night.temperature_celsius > 8
    assert afternoon.relative_humidity_percent < night.relative_humidity_percent
    assert 990 < night.pressure_hpa < 1030


@pytest.mark.parametrize("kind", ["imu", "environment", "system", "generic"])
async def test_every_kind_passes_the_contract_validation(kind: str) -> None:
    for reading in await take(make(kind), 20):
        validate(reading)
        assert reading.WhichOneof("payload") == {"generic": "measurement"}.get(kind, kind)


def test_default_interval_depends_on_the_kind() -> None:
    assert make("imu").interval.total_seconds() == 0.01
    assert make("system").interval.total_seconds() == 10


def wireless(seed: int = 1, start_ns: int = DAY0_NS, **options: str) -> simulated.Simulated:
    settings = simulated.Settings.validate(
        {"kind": "environment", "seed": seed, "link_interval": "30s", **options}
    )
    clock = ticks(start_ns, 1_000_000_000)  # a reading a second
    return simulated.Simulated(settings, clock=lambda: next(clock))


async def test_a_wireless_sensor_reports_link_health_under_its_own_name_every_interval() -> None:
    readings = await take(wireless(), 90)
    links = [r for r in readings if r.WhichOneof("payload") == "link_health"]
    assert len(links) == 3  # at 0, 30 and 60 s
    assert {r.sensor for r in readings} == {"sim-environment"}
    for reading in links:
        validate(reading)
        assert not reading.link_health.HasField("link_quality_percent")  # Bluetooth has none
    data = [r for r in readings if r.WhichOneof("payload") == "environment"]
    plain = [r for r in await take(make("environment", step_ns=10**9), 90)]
    assert [r.SerializeToString() for r in data] == [r.SerializeToString() for r in plain]  # same noise


async def test_the_battery_drains_over_its_life_then_is_replaced_and_the_rssi_is_noisy() -> None:
    sensor = wireless(battery_life="1h", link_interval="1s")
    links = [r.link_health for r in await take(sensor, 7200) if r.WhichOneof("payload") == "link_health"]
    levels = [p.battery_level_percent for p in links]
    drops = [a - b for a, b in itertools.pairwise(levels)]
    assert sum(1 for d in drops if d < -50) in (1, 2)  # a fresh battery once (or twice) in two hours
    assert all(0 <= d <= 0.11 for d in drops if d > -50)  # 100 % an hour: 0.03 % a second, in tenths
    assert max(levels) > 99 and min(levels) < 1
    volts = [p.battery_voltage_volts for p in links]
    assert 3.25 < min(volts) < 3.35 and 4.15 < max(volts) < 4.25
    rssi = [p.signal_strength_dbm for p in links]
    assert all(v == int(v) and -127 <= v <= 20 for v in rssi)
    assert -72 < statistics.fmean(rssi) < -62 and statistics.pstdev(rssi) > 2


async def test_the_battery_is_a_function_of_time_so_a_restart_does_not_recharge_it() -> None:
    hour_ns = 3600 * 10**9
    before = await take(wireless(seed=5, start_ns=DAY0_NS + hour_ns), 1)
    restarted = await take(wireless(seed=5, start_ns=DAY0_NS + hour_ns), 1)
    assert before[1].link_health.battery_level_percent == restarted[1].link_health.battery_level_percent
