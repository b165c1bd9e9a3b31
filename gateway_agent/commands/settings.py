"""The `[commands]` table of agent.toml, and the parameter declarations configured commands share.

    [commands]
      enabled = true
    [[commands.program]]     # gateway_agent/commands/program.py
    [[commands.mqtt]]        # gateway_agent/commands/mqtt.py
    [[commands.gpio_output]] # gateway_agent/commands/gpio_output.py

Each `[[commands.<kind>]]` table is validated by its kind's own `Settings`
(through the registry in gateway_agent/commands/__init__.py, as inputs are),
so an error names the table and the field: `commands.program[0].argv: ...`.
Parameter declarations are the contract's `CommandParameter` in TOML; the
bounds here are the contract's, so a configuration the agent accepts is one
the control service accepts in the hello.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, field
from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import MAX_PARAMETERS, NAME_MAX_LENGTH, NAME_PATTERN, PARAMETER_NAME_PATTERN
from gateway_agent.options import Options

ParameterType = Literal["string", "number", "integer", "boolean"]
_TYPES = {
    "string": delivery.COMMAND_PARAMETER_TYPE_STRING,
    "number": delivery.COMMAND_PARAMETER_TYPE_NUMBER,
    "integer": delivery.COMMAND_PARAMETER_TYPE_INTEGER,
    "boolean": delivery.COMMAND_PARAMETER_TYPE_BOOLEAN,
}


class ParameterSettings(Options, kw_only=True, frozen=True):
    """One declared parameter of a configured command."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=PARAMETER_NAME_PATTERN)]
    type: ParameterType = "string"
    required: bool = False
    allowed_values: Annotated[list[str], Meta(max_length=64)] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    description: Annotated[str, Meta(max_length=1024)] = ""

    def __post_init__(self) -> None:
        if self.allowed_values and self.type != "string":
            raise ValueError("allowed_values is for string parameters")
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("number", "integer"):
            raise ValueError("minimum and maximum are for number and integer parameters")
        if self.minimum is not None and self.maximum is not None and self.maximum < self.minimum:
            raise ValueError("maximum must not be below minimum")
        if any(len(value) > 256 for value in self.allowed_values):
            raise ValueError("allowed_values: each at most 256 characters")

    def to_proto(self) -> delivery.CommandParameter:
        parameter = delivery.CommandParameter(
            name=self.name,
            description=self.description,
            type=_TYPES[self.type],
            required=self.required,
            allowed_values=self.allowed_values,
        )
        if self.minimum is not None:
            parameter.minimum = self.minimum
        if self.maximum is not None:
            parameter.maximum = self.maximum
        return parameter


class DeclaredCommand(Options, kw_only=True, frozen=True):
    """What every configured command has: a name, a description and its parameters."""

    name: Annotated[str, Meta(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
    description: Annotated[str, Meta(max_length=1024)] = ""
    parameters: Annotated[list[ParameterSettings], Meta(max_length=MAX_PARAMETERS)] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"parameters: more than one named {', '.join(twice)}")

    def spec(self) -> delivery.CommandSpec:
        return delivery.CommandSpec(
            name=self.name,
            description=self.description,
            parameters=[p.to_proto() for p in self.parameters],
        )


class CommandsSettings(Options, kw_only=True, frozen=True):
    """Whether the agent takes commands, and the commands agent.toml declares."""

    unvalidated = frozenset({"program", "mqtt", "gpio_output"})

    enabled: Annotated[
        bool, Meta(description="Open the command channel to the ingest service and run commands.")
    ] = True
    program: Annotated[
        list[dict[str, Any]], Meta(description="Commands that run a program (`[[commands.program]]` tables).")
    ] = field(default_factory=list)
    mqtt: Annotated[
        list[dict[str, Any]],
        Meta(description="Commands that publish to an MQTT topic (`[[commands.mqtt]]`)."),
    ] = field(default_factory=list)
    gpio_output: Annotated[
        list[dict[str, Any]],
        Meta(description="GPIO outputs `set_output` switches (`[[commands.gpio_output]]`)."),
    ] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The configured tables by kind, as the registry names them."""
        return {"program": self.program, "mqtt": self.mqtt, "gpio_output": self.gpio_output}
