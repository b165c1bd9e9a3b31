"""The agent's settings: one TOML file, overridable by `SENSORMESH_AGENT_*` environment variables.

    sensormesh agent --config /etc/sensormesh/agent.toml

Environment variables win over the file, nested with "__":
`SENSORMESH_AGENT_DEVICE_ID`, `SENSORMESH_AGENT_TOKEN`,
`SENSORMESH_AGENT_UPLINK__TARGET`, `SENSORMESH_AGENT_BUFFER__DISK_BUDGET`.
Inputs are configured in the file only (`[[inputs.<name>]]` tables, as in
Telegraf), each validated by its own module's `Settings`; so are configured
commands (`[[commands.<kind>]]`). See gateway_agent/agent.example.toml for
every option with its default.

`AgentSettings` is an msgspec struct (gateway_agent/options.py), not a
pydantic-settings model as the services' settings are: pydantic is 11 MB of the
agent's 60 MB budget on a Pi. The environment is read by
gateway_agent/env_overrides.py, with pydantic-settings' names and precedence;
tests/gateway_agent/test_agent_imports.py keeps pydantic out of the agent.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta, field

from gateway_agent import commands as command_registry
from gateway_agent import inputs as registry
from gateway_agent.buffer import BufferSettings
from gateway_agent.commands.base import MAX_COMMANDS, CommandHandler
from gateway_agent.commands.settings import CommandsSettings
from gateway_agent.durations import Duration
from gateway_agent.env_overrides import Overrides, VariableError, merged, read_overrides
from gateway_agent.inputs.base import Input
from gateway_agent.options import Options, OptionsError, Secret, dotted
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink import UplinkSettings

ENV_PREFIX = "SENSORMESH_AGENT_"
DEVICE_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


class ConfigError(Exception):
    """The configuration is unusable; the message names the option."""


def _describe_settings(error: OptionsError, where: str, overrides: Overrides) -> str:
    """As `error.describe()`, a problem with a value from the environment named by its variable
    (`SENSORMESH_AGENT_UPLINK__TLS: ...`), any other by `where` (the file) and the option's path."""
    found = overrides.variable_for(error.loc, unknown=error.unknown)
    if found is None:
        return f"{where}: {error.describe()}"
    variable, rest = found
    return f"{variable}: {dotted(rest) + ': ' if rest else ''}{error.message}"


class AgentSettings(Options, kw_only=True, frozen=True):
    """Everything the agent reads at start-up: `load()` reads the file and the environment."""

    unvalidated = frozenset({"inputs"})

    device_id: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=63,
            pattern=DEVICE_ID_PATTERN,
            description="This gateway's id, as registered.",
        ),
    ]
    token: Annotated[Secret, Meta(description="The device token; prefer token_file.")] | None = None
    token_file: (
        Annotated[
            Path, Meta(description="A file holding the device token; read again when the server refuses it.")
        ]
        | None
    ) = None
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    buffer: BufferSettings = field(default_factory=BufferSettings)
    input_retry_initial: Annotated[
        Duration, Meta(description="First wait before retrying a failed input (doubles).")
    ] = Duration(seconds=1)
    input_retry_max: Annotated[Duration, Meta(description="Longest wait before retrying a failed input.")] = (
        Duration(seconds=60)
    )
    read_timeout: Annotated[
        Duration, Meta(description="A read taking longer (or longer than its interval) counts as failed.")
    ] = Duration(seconds=10)
    stop_timeout: Annotated[
        Duration,
        Meta(description="On stop, time a running command has to finish, then the last upload stream."),
    ] = Duration(seconds=10)
    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    commands: CommandsSettings = field(default_factory=CommandsSettings)

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
            return cls.validate(merged(data, overrides.values))
        except OptionsError as error:
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
                settings = module.Settings.validate(table)
            except OptionsError as error:
                raise ConfigError(error.describe(f"inputs.{kind}[{index}]")) from error
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
                settings.append(module.Settings.validate(table))
            except OptionsError as error:
                raise ConfigError(error.describe(f"commands.{kind}[{index}]")) from error
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
