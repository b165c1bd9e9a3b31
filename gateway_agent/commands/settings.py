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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import MAX_PARAMETERS, NAME_MAX_LENGTH, NAME_PATTERN, PARAMETER_NAME_PATTERN

ParameterType = Literal["string", "number", "integer", "boolean"]
_TYPES = {
    "string": delivery.COMMAND_PARAMETER_TYPE_STRING,
    "number": delivery.COMMAND_PARAMETER_TYPE_NUMBER,
    "integer": delivery.COMMAND_PARAMETER_TYPE_INTEGER,
    "boolean": delivery.COMMAND_PARAMETER_TYPE_BOOLEAN,
}


class ParameterSettings(BaseModel):
    """One declared parameter of a configured command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=PARAMETER_NAME_PATTERN)
    type: ParameterType = "string"
    required: bool = False
    allowed_values: list[str] = Field(default_factory=list, max_length=64)
    minimum: float | None = None
    maximum: float | None = None
    description: str = Field(default="", max_length=1024)

    @model_validator(mode="after")
    def _fits_the_contract(self) -> ParameterSettings:
        if self.allowed_values and self.type != "string":
            raise ValueError("allowed_values is for string parameters")
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("number", "integer"):
            raise ValueError("minimum and maximum are for number and integer parameters")
        if self.minimum is not None and self.maximum is not None and self.maximum < self.minimum:
            raise ValueError("maximum must not be below minimum")
        if any(len(value) > 256 for value in self.allowed_values):
            raise ValueError("allowed_values: each at most 256 characters")
        return self

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


class DeclaredCommand(BaseModel):
    """What every configured command has: a name, a description and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=1024)
    parameters: list[ParameterSettings] = Field(default_factory=list, max_length=MAX_PARAMETERS)

    @model_validator(mode="after")
    def _unique_parameters(self) -> DeclaredCommand:
        names = [p.name for p in self.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"parameters: more than one named {', '.join(twice)}")
        return self

    def spec(self) -> delivery.CommandSpec:
        return delivery.CommandSpec(
            name=self.name,
            description=self.description,
            parameters=[p.to_proto() for p in self.parameters],
        )


class CommandsSettings(BaseModel):
    """Whether the agent takes commands, and the commands agent.toml declares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True, description="Open the command channel to the ingest service and run commands."
    )
    program: list[dict[str, Any]] = Field(
        default_factory=list, description="Commands that run a program (`[[commands.program]]` tables)."
    )
    mqtt: list[dict[str, Any]] = Field(
        default_factory=list, description="Commands that publish to an MQTT topic (`[[commands.mqtt]]`)."
    )
    gpio_output: list[dict[str, Any]] = Field(
        default_factory=list, description="GPIO outputs `set_output` switches (`[[commands.gpio_output]]`)."
    )

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The configured tables by kind, as the registry names them."""
        return {"program": self.program, "mqtt": self.mqtt, "gpio_output": self.gpio_output}
