"""The agent's options: typed tables of agent.toml, validated with msgspec.

Every table the agent reads (the top level, `[uplink]`, `[buffer]`, each
`[[inputs.<name>]]` and `[[commands.<kind>]]`) is an `Options` struct: typed
fields whose bounds, patterns and descriptions are `msgspec.Meta` annotations,
unknown keys refused, frozen once read. `Options.validate(table)` builds one
from TOML values or environment strings ("5000", "false" are read as the
field's type) and raises `OptionsError`, which names the option by its path.

Why msgspec and not pydantic, as the services use: the agent's memory on a Pi
is budgeted (60 MB resident at 100 Hz), and pydantic with its core and first
model build is 11 MB of it where msgspec is under 1 MB
(`sensormesh bench agent`; the README's agent footprint). The types msgspec does not know
are parsed here: `Duration` ("10ms", gateway_agent/durations.py), `ByteSize`
("512MiB", gateway_agent/byte_sizes.py), `Secret` (kept out of logs and reprs) and `Path`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeGuard

import msgspec

from gateway_agent.byte_sizes import ByteSize
from gateway_agent.durations import Duration

Loc = tuple[str | int, ...]


class Secret:
    """A secret option (a token, a password): its repr and str hide it, so logging the options
    or an error about them cannot leak it; `get_secret_value()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _decoded(kind: type, value: Any) -> Any:
    """msgspec's hook for the types it does not know; a ValueError or TypeError here is reported
    at the option's path."""
    if kind is Duration:
        return Duration.parse(value)
    if isinstance(kind, type) and issubclass(kind, ByteSize):
        return kind.parse(value)
    if kind is Secret:
        if not isinstance(value, str | Secret):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        return value if isinstance(value, Secret) else Secret(value)
    if kind is Path:
        if not isinstance(value, str | Path):
            raise TypeError(f"Expected a path (`str`), got `{type(value).__name__}`")
        return Path(value)
    raise NotImplementedError(f"no decoder for {kind!r}")


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>.*)`$", re.S)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>.+)`$")


def _loc(path: str) -> Loc:
    """msgspec's `$.inputs[0].kind` as ("inputs", 0, "kind"); a mapping's key (`[...]`) as "..."."""
    parts: list[str | int] = []
    for match in _PART.finditer(path):
        name, index = match.group(1), match.group(2)
        parts.append(name if name is not None else int(index) if index is not None else "...")
    return tuple(parts)


def dotted(loc: Loc, prefix: str = "") -> str:
    """An option's path as agent.toml spells it: `inputs.bme280[0].address`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "...":
            path += "[...]"
        else:
            path += f"{'.' if path else ''}{part}"
    return path


class OptionsError(ValueError):
    """An option cannot be read: where (`loc`, the path from the validated table), what is wrong,
    and whether the option is `unknown` (no such option) rather than badly set."""

    def __init__(self, loc: Loc, message: str, unknown: bool = False) -> None:
        super().__init__(loc, message)
        self.loc, self.message, self.unknown = loc, message, unknown

    @classmethod
    def from_msgspec(cls, error: msgspec.ValidationError) -> OptionsError:
        text = str(error)
        at = _AT.match(text)
        loc, message = (_loc(at.group("path")), at.group("message")) if at else ((), text)
        if unknown := _UNKNOWN.match(message):
            return cls((*loc, unknown.group("name")), "unknown option", unknown=True)
        if missing := _MISSING.match(message):
            return cls((*loc, missing.group("name")), "required, not set")
        return cls(loc, message)

    def describe(self, prefix: str = "") -> str:
        """The problem named by its option: `inputs.bme280[0].address: ...`."""
        return f"{dotted(self.loc, prefix) or 'settings'}: {self.message}"

    def __str__(self) -> str:
        return self.describe()


def _declared(struct: type, loc: Loc) -> Any:
    """The type declared for the option at `loc` below `struct`, without its `Annotated` and its
    `| None`; None where the path cannot be followed."""
    kind: Any = struct
    for part in loc:
        kind = _bare(kind)
        if isinstance(part, str) and is_struct(kind):
            kind = next((field.type for field in msgspec.structs.fields(kind) if field.name == part), None)
        elif isinstance(part, int) and typing.get_origin(kind) is list:
            kind = typing.get_args(kind)[0]
        else:
            return None
    return _bare(kind)


SWITCHES = {
    **dict.fromkeys(("1", "true", "t", "yes", "y", "on"), True),
    **dict.fromkeys(("0", "false", "f", "no", "n", "off"), False),
}
"""How a switch may be written as a string (pydantic's spellings, any case): in the environment,
and in files written for the pydantic agent (`tls = "no"`)."""


def _switched(struct: type, table: Any) -> Any:
    """`table` (for `struct`) with its switches written as words read as booleans, in nested
    tables and lists of tables too; anything else is left for msgspec to judge."""
    if not isinstance(table, Mapping):
        return table
    kinds = {field.name: _bare(field.type) for field in msgspec.structs.fields(struct)}
    read = dict(table)
    for name, value in table.items():
        kind = kinds.get(name)
        below = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
        if kind is bool and isinstance(value, str):
            read[name] = SWITCHES.get(value.strip().lower(), value)
        elif is_struct(kind):
            read[name] = _switched(kind, value)
        elif is_struct(below) and isinstance(value, list):
            read[name] = [_switched(below, item) for item in value]
    return read


def is_struct(kind: Any) -> TypeGuard[type[msgspec.Struct]]:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def _bare(kind: Any) -> Any:
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        elif typing.get_origin(kind) in (typing.Union, types.UnionType):
            members = [m for m in typing.get_args(kind) if m is not type(None)]
            if len(members) != 1:
                return kind
            kind = members[0]
        else:
            return kind


class _Hidden:
    """An option's value left out of a repr: shown as `...`."""

    def __repr__(self) -> str:
        return "..."


_HIDDEN = _Hidden()


def _names_only(value: Any) -> Any:
    """`value` (tables, lists and mappings of tables) with every option's value shown as `...`."""
    if isinstance(value, Mapping):
        return {key: _names_only(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_names_only(item) for item in value]
    return _HIDDEN


class Options(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One table of agent.toml. Subclasses declare the options (with `kw_only=True`, which msgspec
    does not inherit); unknown keys are refused.

    `flattened` names fields holding options that agent.toml writes in this table itself, not in
    a table of their own: the MQTT input and command take the broker's `host` and `port` beside
    their `topics`. A struct has one base with fields (msgspec's layout), so shared options are
    a field, and `validate` moves their keys into it and names them in errors as written.
    """

    flattened: ClassVar[dict[str, type[Options]]] = {}
    unvalidated: ClassVar[frozenset[str]] = frozenset()
    """Fields holding tables as written, which their kind validates later (`[[inputs.<name>]]`):
    their secrets are not `Secret` yet, so the repr shows their options' names, not values."""

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self._shown(name)}" for name in self.__struct_fields__)
        return f"{type(self).__name__}({shown})"

    def _shown(self, name: str) -> str:
        value = getattr(self, name)
        return repr(_names_only(value) if name in self.unvalidated else value)

    @classmethod
    def validate(cls, table: Mapping[str, Any]) -> Self:
        """The options `table` sets (TOML values, or strings from the environment); OptionsError
        names the first option that cannot be read."""
        try:
            return msgspec.convert(_switched(cls, cls._nested(table)), cls, strict=False, dec_hook=_decoded)
        except msgspec.ValidationError as error:
            raise cls._as_written(OptionsError.from_msgspec(error)) from None

    @classmethod
    def _as_written(cls, problem: OptionsError) -> OptionsError:
        """`problem` with the values a choice takes, and a flattened option named as agent.toml
        writes it (`port`, not `broker.port`)."""
        loc, message = problem.loc, problem.message
        declared = _declared(cls, loc)
        if typing.get_origin(declared) is Literal:
            message = f"{message}; expected {' or '.join(map(repr, typing.get_args(declared)))}"
        if loc and loc[0] in cls.flattened:
            loc = loc[1:]
        return OptionsError(loc, message, problem.unknown)

    @classmethod
    def _nested(cls, table: Mapping[str, Any]) -> Mapping[str, Any]:
        if not cls.flattened or not isinstance(table, Mapping):
            return table
        rest = dict(table)
        for name, options in cls.flattened.items():
            if name in rest:
                raise OptionsError(
                    (name,), "unknown option (its options go in this table itself)", unknown=True
                )
            keys = {field.name for field in msgspec.structs.fields(options)}
            rest[name] = {key: rest.pop(key) for key in keys & rest.keys()}
        return rest
