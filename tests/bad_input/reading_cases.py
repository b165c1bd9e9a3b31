"""Hypothesis strategies for readings, valid or spoiled in one known way, each
with what the ingest service must say about it (`expected_field`: None for a
valid reading, else the field its rejection names, from the reading).

Times are drawn as offsets from the clock when the example is drawn, which is
just before it runs: inside the limits for valid readings, across every edge
for spoiled ones. (Offsets, so that the strategies stay the same when
hypothesis replays an example later.)"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from hypothesis import strategies as st
from sensormesh.v1 import reading_pb2

from tests.bad_input.messages import FLOAT_FIELDS

YEAR_9999_END = 253_402_300_799
RESERVED = [
    "acceleration_x",
    "acceleration_y",
    "acceleration_z",
    "angular_rate_x",
    "angular_rate_y",
    "angular_rate_z",
    "temperature",
    "relative_humidity",
    "pressure",
    "cpu_temperature",
    "disk_used",
    "disk_free",
    "battery_level",
    "battery_voltage",
    "signal_strength",
    "link_quality",
]
RANGES = {
    **{f.name: (-2000.0, 2000.0) for f in reading_pb2.ImuPayload.DESCRIPTOR.fields[:3]},
    **{f.name: (-10000.0, 10000.0) for f in reading_pb2.ImuPayload.DESCRIPTOR.fields[3:]},
    "temperature_celsius": (-100.0, 200.0),
    "relative_humidity_percent": (0.0, 100.0),
    "pressure_hpa": (0.0, 2000.0),
    "cpu_temperature_celsius": (-100.0, 200.0),
    "battery_level_percent": (0.0, 100.0),
    "battery_voltage_volts": (0.0, 100.0),
    "signal_strength_dbm": (-150.0, 30.0),
    "link_quality_percent": (0.0, 100.0),
    "value": (-float(2**53), float(2**53)),  # a measurement's (a double)
}
SENSOR_NAMES = st.one_of(
    st.sampled_from(["mpu6050-0x68", "bme280-0x76", "ble:wt901-C8:2B", "cpu", "disk:/var", "soil@probe.1"]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,20}", fullmatch=True),
)
MEASUREMENT_NAMES = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda n: n not in RESERVED
)
UNITS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=32)


@dataclass(frozen=True)
class ReadingCase:
    reading: reading_pb2.Reading
    expected_field: str | None  # None: valid; else the rejection's field ("reading.imu.acceleration_x_mps2")
    malformed_time: bool = False  # a sample time JSON cannot even express (REST refuses the request)

    @property
    def valid(self) -> bool:
        return self.expected_field is None


def _f32(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, width=32)


@st.composite
def valid_readings(draw: st.DrawFn) -> reading_pb2.Reading:
    moment = time.time() + draw(st.floats(-2 * 86_400, 60))
    reading = reading_pb2.Reading(sensor=draw(SENSOR_NAMES))
    reading.sample_time.seconds = int(moment)
    reading.sample_time.nanos = draw(st.integers(0, 999_999_999))
    kind = draw(st.sampled_from(["imu", "environment", "system", "measurement", "link_health"]))
    if kind == "imu":
        for field in reading_pb2.ImuPayload.DESCRIPTOR.fields:
            setattr(reading.imu, field.name, draw(_f32(*RANGES[field.name])))
    elif kind == "environment":
        reading.environment.temperature_celsius = draw(_f32(*RANGES["temperature_celsius"]))
        for name in ("relative_humidity_percent", "pressure_hpa"):
            if draw(st.booleans()):
                setattr(reading.environment, name, draw(_f32(*RANGES[name])))
    elif kind == "system":
        present = draw(st.sets(st.sampled_from(["cpu", "used", "free"]), min_size=1))
        reading.system.SetInParent()
        if "cpu" in present:
            reading.system.cpu_temperature_celsius = draw(_f32(*RANGES["cpu_temperature_celsius"]))
        if "used" in present:
            reading.system.disk_used_bytes = draw(st.integers(0, 2**63 - 1))
        if "free" in present:
            reading.system.disk_free_bytes = draw(st.integers(0, 2**63 - 1))
    elif kind == "link_health":
        fields = [f.name for f in reading_pb2.LinkHealthPayload.DESCRIPTOR.fields]
        reading.link_health.SetInParent()
        for name in draw(st.sets(st.sampled_from(fields), min_size=1)):
            setattr(reading.link_health, name, draw(_f32(*RANGES[name])))
    else:
        reading.measurement.name = draw(MEASUREMENT_NAMES)
        reading.measurement.value = draw(st.floats(*RANGES["value"]))
        reading.measurement.unit = draw(UNITS)
    if draw(st.integers(0, 9)) == 0:
        reading.MergeFromString(b"\xa0\x01\x07")  # field 20: from newer contracts, ignored
    return reading


def _payload_of(reading: reading_pb2.Reading, payload: str) -> None:
    if reading.WhichOneof("payload") != payload:
        reading.ClearField("payload")
        if payload == "environment":
            reading.environment.temperature_celsius = 20
        elif payload == "system":
            reading.system.cpu_temperature_celsius = 40
        elif payload == "measurement":
            reading.measurement.name, reading.measurement.unit = "current", "A"
        elif payload == "link_health":
            reading.link_health.signal_strength_dbm = -70
        else:
            reading.imu.SetInParent()


@st.composite
def _bad_float(draw: st.DrawFn, reading: reading_pb2.Reading) -> str:
    payload, field = draw(st.sampled_from(FLOAT_FIELDS))
    _payload_of(reading, payload)
    values = [math.nan, math.inf, -math.inf]
    if field in RANGES:
        lo, hi = RANGES[field]
        values += [hi + max(1.0, hi), lo - max(1.0, abs(lo))]
    setattr(getattr(reading, payload), field, draw(st.sampled_from(values)))
    return f"reading.{payload}.{field}"


@st.composite
def _bad_time(draw: st.DrawFn, reading: reading_pb2.Reading) -> bool:
    """Spoils the sample time; True if JSON cannot express the result."""
    now = int(time.time())
    kind = draw(
        st.sampled_from(
            ["missing", "epoch", "negative", "floor", "retention", "ahead", "far", "huge", "nanos"]
        )
    )
    stamp = reading.sample_time
    if kind == "missing":
        reading.ClearField("sample_time")
    elif kind == "epoch":
        stamp.seconds, stamp.nanos = 0, 0
    elif kind == "negative":
        stamp.seconds = draw(st.integers(-62_135_596_800, -1))
    elif kind == "floor":
        stamp.seconds = draw(st.integers(1, 1_577_836_799))  # after 1970, before 2020
    elif kind == "retention":
        stamp.seconds = now - draw(st.integers(31 * 86_400, 365 * 86_400))
    elif kind == "ahead":
        stamp.seconds = now + draw(st.integers(11 * 60, 365 * 86_400))
    elif kind == "far":  # a year ahead up to the last second of year 9999 (bounds fixed: drawn as offsets)
        stamp.seconds = min(now + draw(st.integers(366 * 86_400, 8_000 * 365 * 86_400)), YEAR_9999_END)
    elif kind == "huge":
        stamp.seconds = draw(st.integers(YEAR_9999_END + 1, 2**62))
    else:
        stamp.nanos = draw(st.sampled_from([-1, 1_000_000_000, -(2**31), 2**31 - 1]))
    return kind in ("huge", "nanos")


@st.composite
def spoiled_readings(draw: st.DrawFn) -> ReadingCase:
    reading = draw(valid_readings())
    kind = draw(
        st.sampled_from(
            [
                "float",
                "time",
                "sensor",
                "name",
                "unit",
                "system",
                "link",
                "disk",
                "no payload",
                "newer payload",
            ]
        )
    )
    malformed = False
    if kind == "float":
        field = draw(_bad_float(reading))
    elif kind == "time":
        malformed, field = draw(_bad_time(reading)), "reading.sample_time"
    elif kind == "sensor":
        reading.sensor = draw(st.sampled_from(["", "-x", "x" * 65, "a b", "é", "tab\there", "nul\x00"]))
        field = "reading.sensor"
    elif kind == "name":
        _payload_of(reading, "measurement")
        reading.measurement.name = draw(st.sampled_from([*RESERVED, "Bad", "", "a" * 65, "1abc", "a b"]))
        field = "reading.measurement.name"
    elif kind == "unit":
        _payload_of(reading, "measurement")
        reading.measurement.unit = draw(st.sampled_from(["x" * 33, "é" * 33, "A\x00"]))
        field = "reading.measurement.unit"
    elif kind == "system":
        reading.ClearField("payload")
        reading.system.SetInParent()
        field = "reading.system"
    elif kind == "link":  # a link-health payload with no field set
        reading.ClearField("payload")
        reading.link_health.SetInParent()
        field = "reading.link_health"
    elif kind == "disk":
        _payload_of(reading, "system")
        name = draw(st.sampled_from(["disk_used_bytes", "disk_free_bytes"]))
        setattr(reading.system, name, draw(st.integers(2**63, 2**64 - 1)))
        field = f"reading.system.{name}"
    elif kind == "no payload":
        reading.ClearField("payload")
        field = "reading.payload"
    else:
        reading.ClearField("payload")
        reading.MergeFromString(b"\x7a\x02\x08\x01")  # field 15: a payload kind from newer contracts
        field = "reading.payload"
    return ReadingCase(reading, field, malformed)


def reading_cases(*, spoiled_weight: int = 1) -> st.SearchStrategy[ReadingCase]:
    """Valid and spoiled readings, about `spoiled_weight` spoiled to 2 valid."""
    valid = valid_readings().map(lambda r: ReadingCase(r, None))
    return st.one_of(valid, valid, *[spoiled_readings()] * spoiled_weight)
