"""Enforce the `buf.validate` rules declared in proto/ with protovalidate.

The rules live in the contracts, not in Python: this module only runs them
and turns protovalidate's violations into `FieldViolation`s whose paths read
like the request (`readings[3].reading.imu.acceleration_x_mps2`).

Message-level (CEL) rules carry no field path. Where such a rule is about one
field, its id starts with that field's name (`end_time.after_start_time`),
and the violation is reported against that field.

Two rules hold for every message without being written in the contracts, and
are checked first (`form_violations`): a `google.protobuf.Timestamp` or
`Duration` must lie in the range its own definition gives (years 1 to 9999,
nanos within a second, signs that agree); protovalidate does not check that,
and nothing downstream can convert such a value. And no string may contain
NUL (U+0000): every string may end up in a PostgreSQL `text` column, which
cannot store it.
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from sensormesh_core.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()

# google/protobuf/timestamp.proto and duration.proto: the values each may hold.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
DURATION_SECONDS = 315_576_000_000  # 10,000 years, either way
NANOS_MAX = 999_999_999
NOT_A_TIMESTAMP = (
    "not a valid Timestamp: seconds must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
)
NANOS_OUT_OF_RANGE = "not a valid Timestamp: nanos must be 0 to 999,999,999"
NOT_A_DURATION = "not a valid Duration: at most 315,576,000,000 seconds either way, nanos within a second and of the same sign"
NUL = "must not contain NUL (U+0000): PostgreSQL text cannot store it"
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


def _path(violation: Any, message: Message) -> str:
    """A dotted path with [index] or ["key"] subscripts, from protovalidate's FieldPath."""
    parts: list[str] = []
    field_path = violation.proto.field
    if field_path is None:  # a message-level (CEL) rule on `message` itself
        blamed = (violation.proto.rule_id or "").split(".")[0]
        return blamed if blamed in message.DESCRIPTOR.fields_by_name else ""
    for element in field_path.elements:
        name = element.field_name
        subscript = element.subscript
        if subscript is not None:
            value = subscript.value
            name += f'["{value}"]' if isinstance(value, str) else f"[{value}]"
        parts.append(name)
    return ".".join(parts)


def _timestamp(stamp: Any) -> str | None:
    if not TIMESTAMP_SECONDS[0] <= stamp.seconds <= TIMESTAMP_SECONDS[1]:
        return NOT_A_TIMESTAMP
    return NANOS_OUT_OF_RANGE if not 0 <= stamp.nanos <= NANOS_MAX else None


def _duration(span: Any) -> str | None:
    seconds, nanos = span.seconds, span.nanos
    if abs(seconds) > DURATION_SECONDS or abs(nanos) > NANOS_MAX or seconds * nanos < 0:
        return NOT_A_DURATION
    return None


def _value_problem(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return [FieldViolation(path, NUL)] if "\x00" in value else []
    if field.message_type is None:
        return []
    name = field.message_type.full_name
    problem = _timestamp(value) if name == _TIMESTAMP else _duration(value) if name == _DURATION else None
    if problem is not None:
        return [FieldViolation(path, problem)]
    return form_violations(value, prefix=path)


def _map_problems(entry: Any, mapping: Any, path: str) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    value_field = entry.fields_by_name["value"]
    for key, item in mapping.items():
        if isinstance(key, str) and "\x00" in key:
            found.append(FieldViolation(path, f"a key {NUL}"))
            continue
        found += _value_problem(
            value_field, item, f'{path}["{key}"]' if isinstance(key, str) else f"{path}[{key}]"
        )
    return found


def form_violations(message: Message, *, prefix: str = "") -> list[FieldViolation]:
    """Timestamps and Durations outside their range, and strings with NUL, anywhere in `message`."""
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            found += _map_problems(field.message_type, value, path)
        elif field.is_repeated:
            for index, item in enumerate(value):
                found += _value_problem(field, item, f"{path}[{index}]")
        else:
            found += _value_problem(field, value, path)
    return found


def violations(message: Message, *, prefix: str = "") -> list[FieldViolation]:
    """Every rule `message` breaks, as field violations (empty when valid).

    A Timestamp or Duration outside its range is reported alone: protovalidate
    cannot evaluate rules over it."""
    found = form_violations(message, prefix=prefix)
    if any(v.description in (NOT_A_TIMESTAMP, NANOS_OUT_OF_RANGE, NOT_A_DURATION) for v in found):
        return found
    for violation in _validator.collect_violations(message):
        path = _path(violation, message)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        found.append(
            FieldViolation(field=path, description=violation.proto.message or violation.proto.rule_id)
        )
    return found


def validate(message: Message) -> None:
    """Raise InvalidArgument naming every bad field of `message`."""
    found = violations(message)
    if found:
        fields = ", ".join(v.field or "(message)" for v in found)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {fields}", found)
