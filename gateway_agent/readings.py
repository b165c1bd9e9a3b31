"""Constructors for the readings inputs return: the contract's own `Reading`.

Inputs return `sensormesh.v1.reading_pb2.Reading` messages rather than a
parallel set of dataclasses. The contract already is the typed reading (one
payload per kind, optional humidity and pressure, documented units and
ranges); a second hierarchy would have to mirror every field and be mapped
back before buffering, which costs code and, at 100 Hz, CPU. A protobuf
message is plain data with no transport in it: inputs still know nothing of
gRPC or the buffer. These helpers keep input code short and put the unit of
every argument in its name.
"""

from __future__ import annotations

import re
import time

from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1.reading_pb2 import (
    EnvironmentPayload,
    ImuPayload,
    LinkHealthPayload,
    Measurement,
    Reading,
    SystemPayload,
)

__all__ = [
    "Reading",
    "environment",
    "imu",
    "link_health",
    "measurement",
    "now_ns",
    "sample_time_ns",
    "sensor_name",
    "system",
]


def now_ns() -> int:
    """The wall-clock time in nanoseconds since the epoch: a reading's sample time."""
    return time.time_ns()


def _time(sample_time_ns: int) -> Timestamp:
    # Set directly: Timestamp.FromNanoseconds is Python code, and this runs at 100 Hz per sensor.
    seconds, nanos = divmod(sample_time_ns, 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)


def imu(
    sensor: str,
    sample_time_ns: int,
    acceleration_mps2: tuple[float, float, float],
    angular_rate_dps: tuple[float, float, float],
) -> Reading:
    """A six-axis reading: acceleration in m/s² (gravity included), angular rate in deg/s."""
    ax, ay, az = acceleration_mps2
    gx, gy, gz = angular_rate_dps
    payload = ImuPayload(
        acceleration_x_mps2=ax,
        acceleration_y_mps2=ay,
        acceleration_z_mps2=az,
        angular_rate_x_dps=gx,
        angular_rate_y_dps=gy,
        angular_rate_z_dps=gz,
    )
    return Reading(sensor=sensor, sample_time=_time(sample_time_ns), imu=payload)


def environment(
    sensor: str,
    sample_time_ns: int,
    temperature_celsius: float,
    relative_humidity_percent: float | None = None,
    pressure_hpa: float | None = None,
) -> Reading:
    """An environment reading; humidity and pressure stay absent when not measured."""
    payload = EnvironmentPayload(
        temperature_celsius=temperature_celsius,
        relative_humidity_percent=relative_humidity_percent,
        pressure_hpa=pressure_hpa,
    )
    return Reading(sensor=sensor, sample_time=_time(sample_time_ns), environment=payload)


def system(
    sensor: str,
    sample_time_ns: int,
    *,
    cpu_temperature_celsius: float | None = None,
    disk_used_bytes: int | None = None,
    disk_free_bytes: int | None = None,
) -> Reading:
    """The gateway's own health; set the fields one input measures, leave the rest absent."""
    payload = SystemPayload(
        cpu_temperature_celsius=cpu_temperature_celsius,
        disk_used_bytes=disk_used_bytes,
        disk_free_bytes=disk_free_bytes,
    )
    return Reading(sensor=sensor, sample_time=_time(sample_time_ns), system=payload)


def link_health(
    sensor: str,
    sample_time_ns: int,
    *,
    battery_level_percent: float | None = None,
    battery_voltage_volts: float | None = None,
    signal_strength_dbm: float | None = None,
    link_quality_percent: float | None = None,
) -> Reading:
    """A wireless sensor's battery and radio link, under the sensor's own name; set what the
    radio reports (at least one), leave the rest absent."""
    payload = LinkHealthPayload(
        battery_level_percent=battery_level_percent,
        battery_voltage_volts=battery_voltage_volts,
        signal_strength_dbm=signal_strength_dbm,
        link_quality_percent=link_quality_percent,
    )
    return Reading(sensor=sensor, sample_time=_time(sample_time_ns), link_health=payload)


def measurement(sensor: str, sample_time_ns: int, name: str, value: float, unit: str = "") -> Reading:
    """A generic named measurement (name: lower-case, not a typed quantity's name)."""
    payload = Measurement(name=name, value=value, unit=unit)
    return Reading(sensor=sensor, sample_time=_time(sample_time_ns), measurement=payload)


def sample_time_ns(reading: Reading) -> int:
    """A reading's sample time in ns since the epoch (without Timestamp.ToNanoseconds' Python-level checks)."""
    return reading.sample_time.seconds * 1_000_000_000 + reading.sample_time.nanos


_SENSOR_FORBIDDEN = re.compile(r"[^A-Za-z0-9._:@/-]")


def sensor_name(text: str) -> str:
    """`text` made a valid sensor name: other characters become "_", at most 64, starting alphanumeric."""
    name = _SENSOR_FORBIDDEN.sub("_", text)
    if not name or not name[0].isalnum():
        name = "s" + name
    return name[:64]
