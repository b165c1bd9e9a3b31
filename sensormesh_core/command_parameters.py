"""Command parameters checked against what a device declares for the command.

A device advertises each command it understands with typed parameters
(`CommandParameter` in proto/sensormesh/v1/command_delivery.proto). The
control service checks a `SendCommand`'s parameters against them before it
stores the command, so a wrong one is refused at once, naming the field; the
agent checks again before it runs a command (it must not trust the wire).
Both call `check`, so the two can never disagree.

Parameters travel as a `google.protobuf.Struct`, so every number is a JSON
number (a double): an INTEGER parameter is any number without a fraction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2
from sensormesh.v1 import command_delivery_pb2 as delivery

from sensormesh_core.errors import FieldViolation

MAX_PARAMETERS_BYTES = 16 * 1024
"""SendCommand's limit on the encoded parameters."""

_TYPE_NAMES = {
    delivery.COMMAND_PARAMETER_TYPE_STRING: "a string",
    delivery.COMMAND_PARAMETER_TYPE_NUMBER: "a number",
    delivery.COMMAND_PARAMETER_TYPE_INTEGER: "a whole number",
    delivery.COMMAND_PARAMETER_TYPE_BOOLEAN: "true or false",
}


def as_dict(parameters: struct_pb2.Struct) -> dict[str, Any]:
    """The Struct as plain JSON values (numbers as floats)."""
    return json_format.MessageToDict(parameters)


def as_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """Plain JSON values as a Struct."""
    struct = struct_pb2.Struct()
    struct.update(dict(values))
    return struct


def check(
    declared: Iterable[delivery.CommandParameter], values: Mapping[str, Any], *, field: str = "parameters"
) -> list[FieldViolation]:
    """Every way `values` does not fit `declared`, each naming `field.<parameter>`."""
    specs = {spec.name: spec for spec in declared}
    violations = [
        FieldViolation(f"{field}.{name}", f"not a parameter of this command; it takes {_names(specs)}")
        for name in values
        if name not in specs
    ]
    for name, spec in specs.items():
        if name not in values:
            if spec.required:
                violations.append(FieldViolation(f"{field}.{name}", "required"))
            continue
        problem = _problem(spec, values[name])
        if problem:
            violations.append(FieldViolation(f"{field}.{name}", problem))
    return violations


def _names(specs: Mapping[str, delivery.CommandParameter]) -> str:
    return ", ".join(sorted(specs)) if specs else "no parameters"


def _problem(spec: delivery.CommandParameter, value: Any) -> str:
    """Why `value` does not fit `spec`, or "" when it does."""
    kind = spec.type
    if kind == delivery.COMMAND_PARAMETER_TYPE_STRING:
        if not isinstance(value, str):
            return f"must be {_TYPE_NAMES[kind]}"
        if spec.allowed_values and value not in spec.allowed_values:
            return f"must be one of {', '.join(spec.allowed_values)}"
        return ""
    if kind == delivery.COMMAND_PARAMETER_TYPE_BOOLEAN:
        return "" if isinstance(value, bool) else f"must be {_TYPE_NAMES[kind]}"
    if kind in (delivery.COMMAND_PARAMETER_TYPE_NUMBER, delivery.COMMAND_PARAMETER_TYPE_INTEGER):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"must be {_TYPE_NAMES[kind]}"
        if kind == delivery.COMMAND_PARAMETER_TYPE_INTEGER and not float(value).is_integer():
            return f"must be {_TYPE_NAMES[kind]}"
        if spec.HasField("minimum") and value < spec.minimum:
            return f"must be at least {spec.minimum:g}"
        if spec.HasField("maximum") and value > spec.maximum:
            return f"must be at most {spec.maximum:g}"
        return ""
    return "the device declares it with an unknown type"
