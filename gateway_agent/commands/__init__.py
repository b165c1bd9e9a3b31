"""The configured-command registry: a kind in `[[commands.<kind>]]` -> the module that implements it.

Each module exposes `Settings` (the options of one table, gateway_agent/options.py) and
`create(settings: Sequence[Settings]) -> list[CommandHandler]`: every table of
the kind at once, since some kinds make one command per table (program, mqtt)
and others one command for all of them (gpio_output: `set_output`). Modules
are imported only when configured, so a gateway without GPIO never loads
gpiozero. The built-in commands (gateway_agent/commands/builtins.py) are
always there and need no table. A new kind is a module here, a name in
KINDS and a field of CommandsSettings (gateway_agent/commands/settings.py),
so that agent.toml's `[commands]` table keeps refusing unknown keys.
"""

from __future__ import annotations

import importlib
from typing import Any

KINDS: dict[str, str] = {
    name: f"gateway_agent.commands.{name}" for name in ("program", "mqtt", "gpio_output")
}


def plugin(kind: str) -> Any:
    """The module implementing `kind`; KeyError names the unknown kind."""
    return importlib.import_module(KINDS[kind])
