"""`SENSORMESH_AGENT_*` environment variables, read as a nested table that overrides the agent's TOML file.

The services read their settings through pydantic-settings; the agent does not, because on a
Pi its memory is budgeted (its options are msgspec structs, gateway_agent/options.py, and
pydantic-settings would bring pydantic, python-dotenv and its CLI and cloud source providers).
The rules are pydantic-settings' ones, as the agent used them:

- a variable is the prefix and the option's name, in any case (`SENSORMESH_AGENT_DEVICE_ID`);
- `__` goes one table down (`SENSORMESH_AGENT_UPLINK__TARGET` is `[uplink] target`);
- an option holding a table or a list (`uplink`, `inputs`, `commands.program`) takes JSON
  (`SENSORMESH_AGENT_COMMANDS__PROGRAM='[{"name": "reboot", "argv": ["/sbin/reboot"]}]'`), and
  `__` variables refine such a JSON table;
- a switch takes true/false, yes/no, on/off, 1/0 in any case (gateway_agent/options.py);
- the environment wins over the file value by value (`merged`): `SENSORMESH_AGENT_UPLINK__TARGET`
  replaces the file's `[uplink] target` and keeps its other `[uplink]` options.

Values are strings, validated by the options' struct like the file's. Two rules differ
on purpose: every variable with the prefix must name an option (pydantic-settings ignored a
misspelt `SENSORMESH_AGENT_DEVICEID` and refused only a misspelt nested one); and no `.env` file
is read (under systemd `Environment=` and `EnvironmentFile=` do that, and a services' `.env` in
the working directory used to stop the agent on their `SENSORMESH_DATABASE_URL`).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway_agent.options import Loc, is_struct

NESTING = "__"


class VariableError(ValueError):
    """An environment variable cannot be read as an option; the message names the variable."""


@dataclass(frozen=True)
class Overrides:
    """What the environment sets: `values` nested as the file's tables, and which variable set what."""

    values: dict[str, Any]
    variables: dict[tuple[str, ...], str]  # option path -> the variable that set it

    def variable_for(self, loc: Loc, unknown: bool = False) -> tuple[str, Loc] | None:
        """The variable that set the option at `loc` (or the table holding it), and the rest of the
        path below the variable's option; for an `unknown` option (extra_forbidden), also the
        variable that set something inside it (`..._UPLINK__TARGETT__X`). None if none did."""
        for path, name in self.variables.items():
            if loc[: len(path)] == path:
                return name, loc[len(path) :]
        if unknown:
            for path, name in self.variables.items():
                if path[: len(loc)] == loc:
                    return name, ()
        return None


def read_overrides(model: type[msgspec.Struct], prefix: str, environ: Mapping[str, str]) -> Overrides:
    """The options `environ` sets for `model` (a struct of nested structs); VariableError
    names a variable that cannot be one (bad JSON, `__` below an option that is not a table)."""
    found = []
    for name, value in environ.items():
        if name.upper().startswith(prefix.upper()):
            found.append((tuple(name[len(prefix) :].lower().split(NESTING)), name, value))
    values: dict[str, Any] = {}
    variables: dict[tuple[str, ...], str] = {}
    # Shorter paths first: a JSON table is read before the `__` variables that refine it.
    for path, name, value in sorted(found, key=lambda item: (len(item[0]), item[0])):
        if not all(path):
            raise VariableError(f"{name}: names no option (an empty name between the prefix and `__`)")
        _set(values, path, _parsed(model, path, name, value), name)
        variables[path] = name
    return Overrides(values, variables)


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s values in place of its own, table by table (a list is one value)."""
    result = dict(base)
    for key, value in over.items():
        below = result.get(key)
        result[key] = merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return result


def _parsed(model: type[msgspec.Struct], path: tuple[str, ...], name: str, value: str) -> Any:
    """`value` as the option at `path` takes it: JSON for a table or a list, else the string."""
    owner = model
    for depth, part in enumerate(path[:-1]):
        annotation = _annotation(owner, part)
        if annotation is None:
            return value  # not an option: the struct refuses unknown fields, naming the variable
        below = _model_in(annotation)
        if below is None:
            option = ".".join(path[: depth + 1])
            raise VariableError(
                f"{name}: {option} is not a table of options; set it whole"
                f" ({NESTING.join(name.split(NESTING)[: depth + 1])}, JSON if it is a table or a list)"
            )
        owner = below
    annotation = _annotation(owner, path[-1])
    if annotation is None or not _takes_json(annotation):
        return value
    try:
        return json.loads(value)
    except ValueError as error:
        raise VariableError(f"{name}: {'.'.join(path)} takes JSON here: {error}") from None


def _set(values: dict[str, Any], path: tuple[str, ...], value: Any, name: str) -> None:
    table = values
    for part in path[:-1]:
        below = table.setdefault(part, {})
        if not isinstance(below, dict):
            raise VariableError(
                f"{name}: {'.'.join(path[:-1])} is set whole by another variable, not a table"
            )
        table = below
    table[path[-1]] = value


def _annotation(model: type[msgspec.Struct], name: str) -> Any:
    """The type of `model`'s option `name`, or None if it has none of that name."""
    for field in msgspec.structs.fields(model):
        if field.name == name:
            return field.type
    return None


def _members(annotation: Any) -> Sequence[Any]:
    """The types an annotation admits: `X | None` is X and None; `Annotated[X, ...]` is X."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[msgspec.Struct] | None:
    return next((member for member in _members(annotation) if is_struct(member)), None)


def _takes_json(annotation: Any) -> bool:
    """A struct, a mapping or a sequence other than a string: what pydantic-settings reads as JSON."""
    for member in _members(annotation):
        kind = typing.get_origin(member) or member
        if not isinstance(kind, type) or issubclass(kind, str | bytes):
            continue
        if issubclass(kind, msgspec.Struct | Mapping | Sequence | set | frozenset):
            return True
    return False
