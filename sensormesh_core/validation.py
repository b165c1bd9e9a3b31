"""Enforce the `buf.validate` rules declared in proto/ with protovalidate.

The rules live in the contracts, not in Python: this module only runs them
and turns protovalidate's violations into `FieldViolation`s whose paths read
like the request (`readings[3].reading.imu.acceleration_x_mps2`).

Message-level (CEL) rules carry no field path. Where such a rule is about one
field, its id starts with that field's name (`end_time.after_start_time`),
and the violation is reported against that field.
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.message import Message

from sensormesh_core.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()


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


def violations(message: Message, *, prefix: str = "") -> list[FieldViolation]:
    """Every rule `message` breaks, as field violations (empty when valid)."""
    found = []
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
