"""The fast checks refuse exactly what protovalidate refuses.

The decoder checks the contracts' rules inline (ingest_service/rules.py,
decode.py) and sends only the readings it flags through protovalidate. So:

- never a false accept: whatever the fast path passes, protovalidate passes;
- no needless slow path: whatever protovalidate passes, the fast path passes,
  except readings the service treats specially anyway (a Timestamp whose
  nanos lie outside 0..999,999,999 or within the microsecond after the
  bound, a disk size beyond PostgreSQL's bigint, a NUL character in a name,
  which PostgreSQL text cannot store).

Hypothesis generates readings around every rule's edges.
"""

from __future__ import annotations

import struct

import protovalidate
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sensormesh.v1 import reading_pb2

from ingest_service.catalog import DeviceCatalog
from ingest_service.decode import Decoded, Window, decode_fast
from ingest_service.pg_time import from_unix
from ingest_service.rules import UnsupportedRules, float_range, load_rules, string_rule

RULES = load_rules()
_validator = protovalidate.Validator()
RESERVED = [
    "acceleration_x", "acceleration_y", "acceleration_z", "angular_rate_x", "angular_rate_y", "angular_rate_z",
    "temperature", "relative_humidity", "pressure", "cpu_temperature", "disk_used", "disk_free",
    "battery_level", "battery_voltage", "signal_strength", "link_quality",
]  # fmt: skip


def _f32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _next_f32(value: float, direction: int) -> float:
    bits = struct.unpack("i", struct.pack("f", value))[0]
    bits += direction if value >= 0 else -direction
    return float(struct.unpack("f", struct.pack("i", bits))[0])


BOUNDS = (-10000.0, -2000.0, -150.0, -100.0, 30.0, 100.0, 200.0, 2000.0, 10000.0)
EDGES = [*BOUNDS, 0.0]
EDGES += [_next_f32(b, s) for b in BOUNDS for s in (-1, 1)]
EDGES += [float("nan"), float("inf"), float("-inf"), -0.0, 3.4028234663852886e38]
floats32 = st.one_of(st.floats(width=32), st.sampled_from(EDGES).map(_f32))
optional32 = st.one_of(st.none(), floats32)
sensors = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,66}", fullmatch=True),
    st.sampled_from(["a", "a\n", "mpu6050-0x68", "ble:wt901-C8:2B", "x" * 64, "x" * 65, "é", "", "-a"]),
)
names = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"[a-z][a-z0-9_.-]{0,66}", fullmatch=True),
    st.sampled_from([*RESERVED, "temperature_2", "a", "Z", "a" * 64, "a" * 65, "soil_moisture\n"]),
)


@st.composite
def readings(draw: st.DrawFn) -> reading_pb2.SequencedReading:
    reading = reading_pb2.Reading(sensor=draw(sensors))
    if draw(st.booleans()):
        reading.sample_time.seconds = draw(
            st.one_of(st.integers(-(2**40), 2**40), st.sampled_from([0, 1, -1]))
        )
        reading.sample_time.nanos = draw(
            st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 999_999_999, 10**9]))
        )
    kind = draw(
        st.sampled_from(["imu", "environment", "system", "measurement", "link_health", None, "unknown"])
    )
    if kind == "imu":
        for field in reading_pb2.ImuPayload.DESCRIPTOR.fields:
            setattr(reading.imu, field.name, draw(floats32))
    elif kind == "environment":
        reading.environment.temperature_celsius = draw(floats32)
        for name in ("relative_humidity_percent", "pressure_hpa"):
            value = draw(optional32)
            if value is not None:
                setattr(reading.environment, name, value)
    elif kind == "system":
        reading.system.SetInParent()
        cpu = draw(optional32)
        if cpu is not None:
            reading.system.cpu_temperature_celsius = cpu
        for name in ("disk_used_bytes", "disk_free_bytes"):
            size = draw(st.one_of(st.none(), st.integers(0, 2**64 - 1), st.sampled_from([2**63 - 1, 2**63])))
            if size is not None:
                setattr(reading.system, name, size)
    elif kind == "measurement":
        reading.measurement.name = draw(names)
        reading.measurement.value = draw(
            st.one_of(st.floats(), st.sampled_from([float("nan"), float("inf")]))
        )
        reading.measurement.unit = draw(
            st.one_of(st.text(max_size=40), st.sampled_from(["x" * 32, "x" * 33]))
        )
    elif kind == "link_health":
        reading.link_health.SetInParent()
        for field in reading_pb2.LinkHealthPayload.DESCRIPTOR.fields:
            value = draw(optional32)
            if value is not None:
                setattr(reading.link_health, field.name, value)
    elif kind == "unknown":
        reading.MergeFromString(b"\x7a\x00")  # field 15: a payload from newer contracts
    return reading_pb2.SequencedReading(sequence=draw(st.integers(1, 2**64 - 1)), reading=reading)


def protovalidate_accepts(item: reading_pb2.SequencedReading) -> bool:
    try:
        return not _validator.collect_violations(item)
    except Exception:  # a value protovalidate cannot evaluate counts as refused, as in the service
        return False


def fast_accepts(item: reading_pb2.SequencedReading) -> bool:
    """The fast path's verdict as the service reaches it: names are checked when a
    sensor or series is first met; everything else inline by `decode_fast`."""
    reading = item.reading
    if not RULES.names_ok(reading):
        return False
    device = DeviceCatalog(incarnation=1)
    kind = reading.WhichOneof("payload")
    if kind in device.typed:
        device.typed[kind][reading.sensor] = 1
    elif kind == "measurement":
        device.measurements[(reading.sensor, reading.measurement.name)] = 1
    seconds, nanos = RULES.time_after
    window = Window(from_unix(seconds, nanos) + 1, 2**70)  # the rules only, no service limits
    out = Decoded()
    decode_fast(enumerate([item]), 0, 2**64 - 1, device, RULES, window, out)
    assert not out.violations and not out.pending
    return not out.flagged


def ordinary(item: reading_pb2.SequencedReading) -> bool:
    """Not one of the values the fast path hands to the slow path on purpose."""
    reading = item.reading
    stamp = reading.sample_time
    if not 0 <= stamp.nanos <= 999_999_999:
        return False
    if from_unix(stamp.seconds, stamp.nanos) == from_unix(*RULES.time_after):
        return False  # within the bound's microsecond: the fast path counts in microseconds
    if "\x00" in reading.sensor + reading.measurement.name + reading.measurement.unit:
        return False
    system = reading.system
    return not (reading.HasField("system") and max(system.disk_used_bytes, system.disk_free_bytes) >= 2**63)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings())
@example(
    reading_pb2.SequencedReading(
        sequence=1, reading=reading_pb2.Reading(sensor="a", sample_time={"nanos": 1}, imu={})
    )
)
def test_the_fast_path_refuses_exactly_what_protovalidate_refuses(item: reading_pb2.SequencedReading) -> None:
    fast, slow = fast_accepts(item), protovalidate_accepts(item)
    if fast:
        assert slow, "the fast path accepted a reading protovalidate refuses"
    if slow and ordinary(item):
        assert fast, "the fast path flagged a reading protovalidate accepts"


def test_the_rules_are_read_from_the_contracts() -> None:
    assert (RULES.imu[0].lo, RULES.imu[0].hi) == (-2000, 2000)
    assert (RULES.imu[3].lo, RULES.imu[3].hi) == (-10000, 10000)
    assert (RULES.temperature.lo, RULES.temperature.hi) == (-100, 200)
    assert RULES.sensor.max_len == 64 and RULES.measurement_unit.max_len == 32
    assert "temperature" in RULES.measurement_name.not_in
    assert RULES.time_after == (0, 0) and RULES.sequence_min == 1
    assert [(r.lo, r.hi) for r in RULES.link_health] == [(0, 100), (0, 100), (-150, 30), (0, 100)]
    assert "battery_level" in RULES.measurement_name.not_in


def test_a_rule_the_fast_path_does_not_know_is_refused_loudly() -> None:
    from sensormesh.v1 import ingest_pb2

    with pytest.raises(UnsupportedRules):
        float_range(reading_pb2.SystemPayload.DESCRIPTOR, "disk_used_bytes")  # no float rule at all
    with pytest.raises(UnsupportedRules):
        string_rule(ingest_pb2.ThinningReport.DESCRIPTOR, "first_sample_time")
