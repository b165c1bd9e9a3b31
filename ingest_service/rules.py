"""The contracts' `buf.validate` rules for readings, read from the descriptors
into plain numbers, patterns and sets that the decoder checks inline.

Why: protovalidate costs about 7.5 µs per reading, more than everything else
ingest does with a reading together (see docs/ingest.md). The rules stay in
the proto: this module reads their values (ranges, lengths, patterns,
reserved names) from the generated descriptors at import, and refuses to
build (`UnsupportedRules`) when a rule appears that it does not implement, in
which case the decoder sends every reading through protovalidate instead.

The fast checks only ever *flag* a reading; a flagged reading is validated by
protovalidate (after `sensormesh_core.validation`'s rules for well-formed
times and NUL-free strings), whose violations are what the device is told. So
the service refuses exactly what those refuse, as long as the fast checks never
pass a reading protovalidate refuses; tests/ingest_service/test_rules.py
checks both directions with hypothesis.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor
from sensormesh.v1 import reading_pb2

from sensormesh_core.storage.schema import ENVIRONMENT, IMU, LINK_HEALTH, SYSTEM

_DOUBLE_MAX = sys.float_info.max


class UnsupportedRules(Exception):
    """A rule in the contracts that the fast checks do not implement."""


@dataclass(frozen=True, slots=True)
class FloatRange:
    """An inclusive range; NaN is outside every range, and so is infinity when
    the rule says `finite` (the bounds are then at most ±DBL_MAX)."""

    lo: float
    hi: float

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi


@dataclass(slots=True)
class StringRule:
    """Length in code points, an RE2 pattern anchored at both ends, reserved values,
    and no NUL character (not a contract rule: PostgreSQL text cannot store it, and
    `sensormesh_core.validation` refuses it everywhere).

    Strings that passed are remembered (sensor and measurement names repeat in
    every batch), up to `cache_size` of them.
    """

    min_len: int = 0
    max_len: int | None = None
    pattern: re.Pattern[str] | None = None
    not_in: frozenset[str] = frozenset()
    cache_size: int = 4096
    _passed: set[str] = field(default_factory=set)

    def ok(self, value: str) -> bool:
        if value in self._passed:
            return True
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return False
        if value in self.not_in or (self.pattern is not None and self.pattern.fullmatch(value) is None):
            return False
        if "\x00" in value:
            return False
        if len(self._passed) >= self.cache_size:
            self._passed.clear()
        self._passed.add(value)
        return True


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """Every rule a SequencedReading is held to, as values."""

    sequence_min: int
    # Sample times must be after this (seconds, nanos); unset reads as (0, 0).
    time_after: tuple[int, int]
    sensor: StringRule
    imu: tuple[FloatRange, ...]  # in IMU.quantities order
    temperature: FloatRange
    relative_humidity: FloatRange
    pressure: FloatRange
    cpu_temperature: FloatRange
    link_health: tuple[FloatRange, ...]  # in LINK_HEALTH.quantities order
    measurement_name: StringRule
    measurement_value: FloatRange
    measurement_unit: StringRule

    def names_ok(self, reading: Any) -> bool:
        """Whether the names a reading would create (sensor, measurement quantity and
        unit) pass their rules: checked once, before a sensor or series is created;
        the decoder then trusts names it finds in the catalog."""
        if not self.sensor.ok(reading.sensor):
            return False
        if reading.WhichOneof("payload") == "measurement":
            m = reading.measurement
            return self.measurement_name.ok(m.name) and self.measurement_unit.ok(m.unit)
        return True


def _field_rules(message: Descriptor, name: str) -> Any:
    return message.fields_by_name[name].GetOptions().Extensions[validate_pb2.field]


def _set_fields(rules: Any) -> set[str]:
    return {descriptor.name for descriptor, _ in rules.ListFields()}


def _only(rules: Any, allowed: set[str], where: str) -> None:
    extra = _set_fields(rules) - allowed
    if extra:
        raise UnsupportedRules(f"{where}: {sorted(extra)}")


def float_range(message: Descriptor, name: str) -> FloatRange:
    """The range a float or double field must lie in (gte, lte, finite only)."""
    rules = _field_rules(message, name)
    where = f"{message.name}.{name}"
    _only(rules, {"float", "double"}, where)
    kind = rules.WhichOneof("type")
    if kind not in ("float", "double"):
        raise UnsupportedRules(f"{where}: no float rule")
    typed = getattr(rules, kind)
    _only(typed, {"gte", "lte", "finite"}, where)
    if not typed.finite and not (typed.HasField("gte") or typed.HasField("lte")):
        raise UnsupportedRules(f"{where}: a rule that lets NaN through")
    lo = typed.gte if typed.HasField("gte") else (-_DOUBLE_MAX if typed.finite else float("-inf"))
    hi = typed.lte if typed.HasField("lte") else (_DOUBLE_MAX if typed.finite else float("inf"))
    return FloatRange(lo, hi)


def string_rule(message: Descriptor, name: str) -> StringRule:
    """Length, anchored pattern and reserved values of a string field."""
    rules = _field_rules(message, name)
    where = f"{message.name}.{name}"
    _only(rules, {"string"}, where)
    typed = rules.string
    _only(typed, {"min_len", "max_len", "pattern", "not_in"}, where)
    pattern = None
    if typed.HasField("pattern"):
        source = typed.pattern
        # RE2's `$` matches only at the very end; Python's fullmatch of the
        # inner expression has the same meaning, its `$` would not.
        if not (source.startswith("^") and source.endswith("$") and not source.endswith("\\$")):
            raise UnsupportedRules(f"{where}: pattern not anchored at both ends")
        pattern = re.compile(source[1:-1])
    return StringRule(
        min_len=typed.min_len,
        max_len=typed.max_len if typed.HasField("max_len") else None,
        pattern=pattern,
        not_in=frozenset(typed.not_in),
    )


def _check_reading_shape() -> tuple[int, int]:
    """Rules of Reading and SequencedReading beyond plain fields; returns the time bound."""
    reading = reading_pb2.Reading.DESCRIPTOR
    time_rules = _field_rules(reading, "sample_time")
    _only(time_rules, {"required", "timestamp"}, "Reading.sample_time")
    _only(time_rules.timestamp, {"gt"}, "Reading.sample_time")
    if not time_rules.timestamp.HasField("gt"):
        raise UnsupportedRules("Reading.sample_time: no lower bound")
    after = (time_rules.timestamp.gt.seconds, time_rules.timestamp.gt.nanos)
    # An unset sample_time reads as (0, 0); the bound must refuse it for
    # `required` to need no presence check of its own.
    if after < (0, 0):
        raise UnsupportedRules("Reading.sample_time: bound lets an unset time through")
    payload = reading.oneofs_by_name["payload"].GetOptions().Extensions[validate_pb2.oneof]
    if not payload.required:
        raise UnsupportedRules("Reading.payload: optional payload")
    for name in ("imu", "environment", "system", "measurement", "link_health"):
        _only(_field_rules(reading, name), set(), f"Reading.{name}")
    sequenced = reading_pb2.SequencedReading.DESCRIPTOR
    _only(_field_rules(sequenced, "reading"), {"required"}, "SequencedReading.reading")
    return after


# The message-level (CEL) rules the decoder implements: "at least one field set" of the
# payloads whose fields are all optional. The expression must be exactly the one whose
# meaning the decoder's check has.
def _not_empty(message: Descriptor) -> str:
    return " || ".join(f"has(this.{f.name})" for f in message.fields)


_NOT_EMPTY_RULES = {
    reading_pb2.SystemPayload.DESCRIPTOR: "system_payload.not_empty",
    reading_pb2.LinkHealthPayload.DESCRIPTOR: "link_health_payload.not_empty",
}


def _check_message_rules() -> None:
    """Message-level (CEL) rules: only the payloads' "not empty" ones, which the decoder implements."""
    for message in (
        reading_pb2.SequencedReading,
        reading_pb2.Reading,
        reading_pb2.ImuPayload,
        reading_pb2.EnvironmentPayload,
        reading_pb2.Measurement,
    ):
        if _set_fields(message.DESCRIPTOR.GetOptions().Extensions[validate_pb2.message]):
            raise UnsupportedRules(f"{message.DESCRIPTOR.name}: message rules")
    for descriptor, rule_id in _NOT_EMPTY_RULES.items():
        rules = descriptor.GetOptions().Extensions[validate_pb2.message]
        expressions = [(rule.id, rule.expression) for rule in rules.cel]
        if _set_fields(rules) - {"cel"} or expressions != [(rule_id, _not_empty(descriptor))]:
            raise UnsupportedRules(f"{descriptor.name}: message rules changed")
    for name in ("disk_used_bytes", "disk_free_bytes"):
        _only(_field_rules(reading_pb2.SystemPayload.DESCRIPTOR, name), set(), f"SystemPayload.{name}")


def load_rules() -> ReadingRules:
    """Read the rules from the generated descriptors; raises UnsupportedRules."""
    after = _check_reading_shape()
    _check_message_rules()
    sequence_rules = _field_rules(reading_pb2.SequencedReading.DESCRIPTOR, "sequence")
    _only(sequence_rules, {"uint64"}, "SequencedReading.sequence")
    _only(sequence_rules.uint64, {"gte"}, "SequencedReading.sequence")
    imu = reading_pb2.ImuPayload.DESCRIPTOR
    environment = reading_pb2.EnvironmentPayload.DESCRIPTOR
    system = reading_pb2.SystemPayload.DESCRIPTOR
    link_health = reading_pb2.LinkHealthPayload.DESCRIPTOR
    measurement = reading_pb2.Measurement.DESCRIPTOR
    if [f.name for f in imu.fields] != [q.proto_field for q in IMU.quantities]:
        raise UnsupportedRules("ImuPayload: fields differ from storage/schema.py")
    if [f.name for f in environment.fields] != [q.proto_field for q in ENVIRONMENT.quantities]:
        raise UnsupportedRules("EnvironmentPayload: fields differ from storage/schema.py")
    if [f.name for f in system.fields] != [q.proto_field for q in SYSTEM.quantities]:
        raise UnsupportedRules("SystemPayload: fields differ from storage/schema.py")
    if [f.name for f in link_health.fields] != [q.proto_field for q in LINK_HEALTH.quantities]:
        raise UnsupportedRules("LinkHealthPayload: fields differ from storage/schema.py")
    return ReadingRules(
        sequence_min=sequence_rules.uint64.gte,
        time_after=after,
        sensor=string_rule(reading_pb2.Reading.DESCRIPTOR, "sensor"),
        imu=tuple(float_range(imu, q.proto_field) for q in IMU.quantities),
        temperature=float_range(environment, "temperature_celsius"),
        relative_humidity=float_range(environment, "relative_humidity_percent"),
        pressure=float_range(environment, "pressure_hpa"),
        cpu_temperature=float_range(system, "cpu_temperature_celsius"),
        link_health=tuple(float_range(link_health, q.proto_field) for q in LINK_HEALTH.quantities),
        measurement_name=string_rule(measurement, "name"),
        measurement_value=float_range(measurement, "value"),
        measurement_unit=string_rule(measurement, "unit"),
    )
