"""Simulated sensors: realistic signals with noise, for demos, load tests and machines without hardware.

Each instance simulates one sensor of one payload kind:
- imu: a sensor at rest on a running machine. Gravity (9.80665 m/s²) along a
  slightly tilted Z axis, a 29.5 Hz vibration (a motor at 1770 rpm) of
  0.4 m/s², white noise of 0.03 m/s² (the MPU-6050's 400 µg/√Hz over a 44 Hz
  bandwidth); gyroscope bias of a few tenths of deg/s, noise of 0.05 deg/s and
  the vibration's rocking. Meant to run at 100 Hz (interval "10ms").
- environment: indoor air with a daily cycle: temperature 18 ± 6 °C peaking at
  15:00 UTC, relative humidity falling as it warms, pressure drifting around
  1013 hPa over days; small noise on each.
- system: CPU temperature around 48 °C following a slow load cycle, disk use
  growing by about 1 MB an hour.
- generic: a named measurement (default soil_moisture in %) as a bounded random walk.

Any of them can be wireless (`link_interval`): then it also reports link
health under its own sensor name every `link_interval`, as a battery BLE
sensor would: a battery draining linearly from 100 % to empty over
`battery_life` and then replaced (a sawtooth; the voltage of a one-cell
lithium battery, 4.2 V full to 3.3 V empty, linear for simplicity), and an
RSSI around -67 dBm fading ±5 dB over ten minutes with 3 dB of noise, in whole
dBm within Bluetooth's -127 to 20. No link quality: Bluetooth has none.

Signals are functions of the sample time plus noise from a generator seeded
by `seed`: the same seed and the same sample times give the same readings
(the battery too, so an agent restart does not recharge it).

Sample config:

    [[inputs.simulated]]
      ## imu, environment, system or generic.
      kind = "imu"
      ## Sensor name; default "sim-<kind>".
      # sensor = "sim-imu"
      ## Seed of the noise generator.
      # seed = 1
      ## Time between reads; default 10ms for imu, 1s for environment and generic, 10s for system.
      # interval = "10ms"
      ## environment only: every this long the temperature jumps 6 °C for 5 s; unset: never.
      # excursion_every = "45s"
      ## generic only: the measurement's name and unit.
      # measurement = "soil_moisture"
      # unit = "%"
      ## A wireless sensor: also report battery and signal strength this often; unset: none.
      # link_interval = "30s"
      ## Time for the simulated battery to drain from full to empty (then it is replaced).
      # battery_life = "6h"
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Literal

from msgspec import Meta

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import InputSettings
from gateway_agent.readings import Reading, environment, imu, link_health, measurement, now_ns, system

Kind = Literal["imu", "environment", "system", "generic"]
GRAVITY = 9.80665
DAY_S = 86400.0
EXCURSION_C, EXCURSION_S = 6.0, 5.0  # how far and how long an environment excursion goes
DEFAULT_INTERVAL = {
    "imu": timedelta(milliseconds=10),
    "environment": timedelta(seconds=1),
    "system": timedelta(seconds=10),
    "generic": timedelta(seconds=1),
}


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one simulated sensor."""

    kind: Kind
    sensor: Annotated[str, Meta(description='Sensor name; default "sim-<kind>".')] | None = None
    seed: int = 1
    interval: Duration | None = None  # type: ignore[assignment]  # None: the kind's default
    excursion_every: (
        Annotated[
            Duration,
            Meta(
                description="environment only: every this long, the temperature jumps 6 °C for 5 s (a door left open, a "
                "heater stuck), something for an alert rule to catch; unset: never."
            ),
        ]
        | None
    ) = None
    measurement: Annotated[str, Meta(max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")] = "soil_moisture"
    unit: Annotated[str, Meta(max_length=32)] = "%"
    link_interval: (
        Annotated[
            Duration, Meta(description="Also report link health this often (a wireless sensor); unset: none.")
        ]
        | None
    ) = None
    battery_life: Annotated[
        Duration, Meta(description="Time for the simulated battery to drain from full to empty.")
    ] = Duration(hours=6)


class Simulated:
    """One simulated sensor; `clock` gives sample times in ns since the epoch."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = now_ns) -> None:
        self.settings = settings
        self.sensor = settings.sensor or f"sim-{settings.kind}"
        self.name = settings.name or self.sensor
        self.interval = settings.interval or DEFAULT_INTERVAL[settings.kind]
        self._clock = clock
        self._rng = random.Random(settings.seed)
        self._tilt = (self._rng.uniform(-0.05, 0.05), self._rng.uniform(-0.05, 0.05))
        self._gyro_bias = tuple(self._rng.uniform(-0.4, 0.4) for _ in range(3))
        self._walk = 0.0
        # Link health draws from its own generator: turning it on leaves the data's noise as it was.
        self._link_rng = random.Random(f"{settings.seed}-link")
        life = settings.battery_life.total_seconds()
        self._battery_phase = self._link_rng.uniform(0, life) if life > 0 else 0.0
        self._fade_phase = self._link_rng.uniform(0, 2 * math.pi)
        self._next_link_ns = 0
        self._generate = {
            "imu": self._imu,
            "environment": self._environment,
            "system": self._system,
            "generic": self._generic,
        }[settings.kind]

    async def open(self) -> None:
        return None

    async def read(self) -> Sequence[Reading]:
        t_ns = self._clock()
        readings = [self._generate(t_ns)]
        every = self.settings.link_interval
        if every is not None and t_ns >= self._next_link_ns:
            readings.append(self._link_health(t_ns))
            self._next_link_ns = t_ns + int(every.total_seconds() * 1e9)
        return readings

    async def close(self) -> None:
        return None

    def _imu(self, t_ns: int) -> Reading:
        t = t_ns / 1e9
        gauss = self._rng.gauss
        roll, pitch = self._tilt
        vibration = 0.4 * math.sin(2 * math.pi * 29.5 * t)
        acceleration = (
            GRAVITY * math.sin(pitch) + 0.3 * vibration + gauss(0, 0.03),
            -GRAVITY * math.sin(roll) * math.cos(pitch) + 0.2 * vibration + gauss(0, 0.03),
            GRAVITY * math.cos(roll) * math.cos(pitch) + vibration + gauss(0, 0.03),
        )
        rocking = 0.8 * math.cos(2 * math.pi * 29.5 * t)
        bx, by, bz = self._gyro_bias
        angular_rate = (
            bx + rocking + gauss(0, 0.05),
            by + 0.5 * rocking + gauss(0, 0.05),
            bz + gauss(0, 0.05),
        )
        return imu(self.sensor, t_ns, acceleration, angular_rate)

    def _environment(self, t_ns: int) -> Reading:
        t = t_ns / 1e9
        self._walk = max(-1.0, min(1.0, self._walk + self._rng.gauss(0, 0.01)))
        hour = (t % DAY_S) / 3600.0
        temperature = 18.0 + 6.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0) + self._walk
        temperature += self._rng.gauss(0, 0.05) + self._excursion(t)
        humidity = min(95.0, max(5.0, 55.0 - 2.0 * (temperature - 18.0) + self._rng.gauss(0, 0.3)))
        pressure = 1013.25 + 4.0 * math.sin(2 * math.pi * t / (3.3 * DAY_S)) + 2.0 * self._walk
        return environment(self.sensor, t_ns, temperature, humidity, pressure + self._rng.gauss(0, 0.02))

    def _excursion(self, t: float) -> float:
        every = self.settings.excursion_every
        if every is None or t % every.total_seconds() >= EXCURSION_S:
            return 0.0
        return EXCURSION_C

    def _system(self, t_ns: int) -> Reading:
        t = t_ns / 1e9
        cpu = 48.0 + 4.0 * math.sin(2 * math.pi * t / 900.0) + self._rng.gauss(0, 0.3)
        used = 6_000_000_000 + int((t % (30 * DAY_S)) * 300)  # ~1 MB an hour, wrapping monthly
        return system(self.sensor, t_ns, cpu_temperature_celsius=cpu, disk_used_bytes=used,
                      disk_free_bytes=25_000_000_000 - used)  # fmt: skip

    def _link_health(self, t_ns: int) -> Reading:
        t = t_ns / 1e9
        life = self.settings.battery_life.total_seconds()
        level = 100.0 * (1.0 - ((t + self._battery_phase) % life) / life) if life > 0 else 100.0
        volts = 3.3 + 0.9 * level / 100.0 + self._link_rng.gauss(0, 0.005)
        fade = 5.0 * math.sin(2 * math.pi * t / 600.0 + self._fade_phase)
        rssi = max(-127, min(20, round(-67.0 + fade + self._link_rng.gauss(0, 3.0))))
        return link_health(
            self.sensor,
            t_ns,
            battery_level_percent=round(level, 1),
            battery_voltage_volts=round(volts, 3),
            signal_strength_dbm=float(rssi),
        )

    def _generic(self, t_ns: int) -> Reading:
        self._walk = max(-10.0, min(10.0, self._walk + self._rng.gauss(0, 0.2)))
        return measurement(
            self.sensor, t_ns, self.settings.measurement, 30.0 + self._walk, self.settings.unit
        )


def create(settings: Settings) -> Simulated:
    return Simulated(settings)
