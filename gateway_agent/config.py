"""The agent's settings: one TOML file, overridable by `SENSORMESH_AGENT_*` environment variables.

    sensormesh agent --config /etc/sensormesh/agent.toml

Environment variables win over the file, nested with "__":
`SENSORMESH_AGENT_DEVICE_ID`, `SENSORMESH_AGENT_TOKEN`,
`SENSORMESH_AGENT_UPLINK__TARGET`, `SENSORMESH_AGENT_BUFFER__DISK_BUDGET`.
Inputs are configured in the file only (`[[inputs.<name>]]` tables, as in
Telegraf), each validated by its own module's `Settings`; so are configured
commands (`[[commands.<kind>]]`). See gateway_agent/agent.example.toml for
every option with its default.

`AgentSettings` is a plain pydantic model, not a pydantic-settings one as the
services' are: the environment is read by gateway_agent/env_overrides.py, with
the same names and precedence, so the agent does not load pydantic-settings
(1.5 MiB of a 60 MB budget; tests/gateway_agent/test_agent_imports.py keeps it so).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from gateway_agent import commands as command_registry
from gateway_agent import inputs as registry
from gateway_agent.buffer import BufferSettings
from gateway_agent.commands.base import MAX_COMMANDS, CommandHandler
from gateway_agent.commands.settings import CommandsSettings
from gateway_agent.durations import Duration
from gateway_agent.env_overrides import Overrides, VariableError, merged, read_overrides
from gateway_agent.inputs.base import Input
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink import UplinkSettings

ENV_PREFIX = "SENSORMESH_AGENT_"
DEVICE_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


class ConfigError(Exception):
    """The configuration is unusable; the message names the option."""


def _dotted(loc: Sequence[str | int], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def describe(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the option by its path: `inputs.bme280[0].address: ...`."""
    return "; ".join(
        f"{_dotted(item['loc'], prefix) or 'settings'}: {item['msg']}" for item in error.errors()
    )


def _describe_settings(error: ValidationError, where: str, overrides: Overrides) -> str:
    """As `describe`, a problem with a value from the environment named by its variable
    (`SENSORMESH_AGENT_UPLINK__TLS: ...`), any other by `where` (the file) and the option's path."""
    problems = []
    for item in error.errors():
        found = overrides.variable_for(item["loc"], unknown=item["type"] == "extra_forbidden")
        if found is None:
            problems.append(f"{where}: {_dotted(item['loc']) or 'settings'}: {item['msg']}")
        else:
            variable, rest = found
            problems.append(f"{variable}: {_dotted(rest) + ': ' if rest else ''}{item['msg']}")
    return "; ".join(problems)


class AgentSettings(BaseModel):
    """Everything the agent reads at start-up: `load()` reads the file and the environment."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(
        min_length=1,
        max_length=63,
        pattern=DEVICE_ID_PATTERN,
        description="This gateway's id, as registered.",
    )
    token: SecretStr | None = Field(default=None, description="The device token; prefer token_file.")
    token_file: Path | None = Field(
        default=None, description="A file holding the device token; read again when the server refuses it."
    )
    uplink: UplinkSettings = Field(default_factory=UplinkSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    input_retry_initial: Duration = Field(
        default=timedelta(seconds=1), description="First wait before retrying a failed input (doubles)."
    )
    input_retry_max: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait before retrying a failed input."
    )
    read_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="A read taking longer (or longer than its interval) counts as failed.",
    )
    stop_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="On stop, time a running command has to finish, then the last upload stream.",
    )
    inputs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    commands: CommandsSettings = Field(default_factory=CommandsSettings)

    @classmethod
    def load(cls, path: Path | None, environ: Mapping[str, str] | None = None) -> AgentSettings:
        """Read `path` (TOML) and `SENSORMESH_AGENT_*` variables of `environ` (the process's
        environment), which win over the file's values; ConfigError names what is wrong: the
        variable, or the file and the option."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ConfigError(f"{path}: {error}") from error
        try:
            overrides = read_overrides(cls, ENV_PREFIX, os.environ if environ is None else environ)
        except VariableError as error:
            raise ConfigError(str(error)) from error
        try:
            return cls.model_validate(merged(data, overrides.values))
        except ValidationError as error:
            raise ConfigError(_describe_settings(error, str(path or "environment"), overrides)) from error

    def device_token(self) -> str:
        """The token from `token` or `token_file` (systemd: $CREDENTIALS_DIRECTORY/device-token)."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is None:
            raise ConfigError("no device token: set token_file (or SENSORMESH_AGENT_TOKEN)")
        try:
            token = self.token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"token_file: {error}") from error
        if not token:
            raise ConfigError(f"token_file: {self.token_file} is empty")
        return token

    def token_source(self) -> TokenSource:
        """The token as `device_token()` reads it now; a `token_file` is read again on every retry
        of a refused upload, so a rotated token written there is used without a restart."""
        return TokenSource(self.device_token(), self.token_file if self.token is None else None)


def build_inputs(configured: dict[str, list[dict[str, Any]]]) -> list[Input]:
    """Instantiate every `[[inputs.<name>]]` table; ConfigError names the table and the field."""
    built: list[Input] = []
    for kind, tables in configured.items():
        try:
            module = registry.plugin(kind)
        except KeyError:
            raise ConfigError(
                f"inputs.{kind}: unknown input; known: {', '.join(sorted(registry.INPUTS))}"
            ) from None
        for index, table in enumerate(tables):
            try:
                settings = module.Settings.model_validate(table)
            except ValidationError as error:
                raise ConfigError(describe(error, f"inputs.{kind}[{index}]")) from error
            built.append(module.create(settings))
    names = [item.name for item in built]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"inputs: more than one input named {', '.join(duplicates)}; give each a `name`")
    return built


def build_commands(configured: CommandsSettings, reserved: Sequence[str]) -> list[CommandHandler]:
    """Instantiate every `[[commands.<kind>]]` table; ConfigError names the table and the field, or
    a name used twice (`reserved`: the built-ins' names)."""
    handlers: list[CommandHandler] = []
    for kind, tables in configured.tables().items():
        if not tables:
            continue
        module = command_registry.plugin(kind)
        settings = []
        for index, table in enumerate(tables):
            try:
                settings.append(module.Settings.model_validate(table))
            except ValidationError as error:
                raise ConfigError(describe(error, f"commands.{kind}[{index}]")) from error
        try:
            handlers.extend(module.create(settings))
        except ValueError as error:
            raise ConfigError(f"commands.{kind}: {error}") from error
    names = [*reserved, *(h.spec.name for h in handlers)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"commands: more than one command named {', '.join(duplicates)}"
            f" (the built-ins are {', '.join(reserved)}; set_output is the GPIO outputs' command)"
        )
    if len(names) > MAX_COMMANDS:
        raise ConfigError(f"commands: {len(names)} commands; an agent advertises at most {MAX_COMMANDS}")
    return handlers


SIMULATED_INPUTS: dict[str, list[dict[str, Any]]] = {
    "simulated": [
        {"kind": "imu", "interval": "10ms"},
        {"kind": "environment", "interval": "1s", "link_interval": "30s"},
        {"kind": "system", "interval": "10s"},
        {"kind": "generic", "interval": "1s"},
    ]
}
"""What `--simulate` runs instead of the configured inputs: one sensor of each payload kind (the
environment sensor wireless, so link health too)."""
