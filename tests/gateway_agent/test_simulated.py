"""The simulator: reproducible, realistic ranges, one reading kind per instance."""

from __future__ import annotations

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
