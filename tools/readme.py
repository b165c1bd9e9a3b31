"""Regenerate the README's generated sections: the settings tables and the local stack's examples.

Every `SENSORMESH_*` variable is a field of a settings class; the tables are
written from those classes (name, default, description), so they cannot drift
from the code. The examples are `sensormesh up`'s own, rendered with the
default addresses. A section sits between

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

Run by `make readme`; `--check` exits 1 with a diff when the README is stale
(the test suite runs it).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import types
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

import msgspec
from pydantic import BaseModel, ByteSize, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_service.settings import ControlSettings  # noqa: E402
from gateway_agent.byte_sizes import ByteSize as AgentByteSize  # noqa: E402
from gateway_agent.config import AgentSettings  # noqa: E402
from gateway_agent.durations import Duration  # noqa: E402
from gateway_agent.options import Secret  # noqa: E402
from ingest_service.settings import IngestSettings  # noqa: E402
from query_service.settings import QuerySettings  # noqa: E402
from sensormesh_cli.client import ClientSettings  # noqa: E402
from sensormesh_cli.stack.examples import Endpoints, Paths, render  # noqa: E402
from sensormesh_cli.stack.settings import StackSettings  # noqa: E402
from sensormesh_console.settings import ConsoleSettings  # noqa: E402
from sensormesh_core.config import ENV_PREFIX, StorageSettings  # noqa: E402
from sensormesh_core.grpc_tls import ServerTlsSettings  # noqa: E402

README = ROOT / "README.md"
SECTION = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S
)


def _default(info: FieldInfo) -> str:
    return "required" if info.is_required() else _shown(info.get_default(call_default_factory=True))


def _shown(value: object) -> str:
    """A default as the table shows it (the agent's durations and sizes as agent.toml writes them)."""
    if value is None or isinstance(value, SecretStr | Secret):
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, ByteSize):
        return f"`{value.human_readable(decimal=False, separator='')}`"
    if isinstance(value, AgentByteSize):
        return f"`{value.human()}`"
    if isinstance(value, Duration):
        return f"`{value.spelled()}`"
    if isinstance(value, timedelta):
        return f"`{TypeAdapter(timedelta).dump_python(value, mode='json')}`"
    if isinstance(value, datetime):
        return f"`{value.isoformat().replace('+00:00', 'Z')}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, skip: set[str]) -> Iterator[tuple[str, str, str]]:
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{prefix}{name.upper()}__", set())
            continue
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        yield f"`{prefix}{name.upper()}`", _default(info), description


def _members(annotation: object) -> list[object]:
    """An annotation's types: `X | None` is X and None, `Annotated[X, ...]` is itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _meta(annotation: object) -> msgspec.Meta | None:
    """The `msgspec.Meta` of an option's annotation (or of the annotated member of a union)."""
    for member in _members(annotation):
        if typing.get_origin(member) is typing.Annotated:
            return next((m for m in member.__metadata__ if isinstance(m, msgspec.Meta)), None)
    return None


def _struct_default(info: msgspec.structs.FieldInfo) -> str:
    if info.required:
        return "required"
    return _shown(info.default if info.default_factory is msgspec.NODEFAULT else info.default_factory())


def _struct_rows(struct: type[msgspec.Struct], prefix: str, skip: set[str]) -> Iterator[tuple[str, str, str]]:
    """As `_rows`, for the agent's options (msgspec structs, gateway_agent/options.py)."""
    for info in msgspec.structs.fields(struct):
        if info.name in skip:
            continue
        if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
            yield from _struct_rows(info.type, f"{prefix}{info.name.upper()}__", set())
            continue
        meta = _meta(info.type)
        description = ((meta.description if meta else None) or "").replace("|", "\\|").replace("\n", " ")
        yield f"`{prefix}{info.name.upper()}`", _struct_default(info), description


def settings_table(
    model: type[BaseModel] | type[msgspec.Struct], prefix: str = ENV_PREFIX, skip: set[str] | None = None
) -> str:
    """A Markdown table of a settings class's own fields (those of `skip` left out)."""
    rows = _struct_rows if issubclass(model, msgspec.Struct) else _rows
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(model, prefix, skip or set())]  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def sections() -> dict[str, str]:
    return {
        "settings-storage": settings_table(StorageSettings),
        "settings-ingest": settings_table(IngestSettings, skip=set(StorageSettings.model_fields)),
        "settings-query": settings_table(QuerySettings, skip=set(StorageSettings.model_fields)),
        "settings-control": settings_table(ControlSettings, skip=set(QuerySettings.model_fields)),
        "settings-tls": settings_table(ServerTlsSettings),
        "settings-up": settings_table(StackSettings, skip=set(StorageSettings.model_fields)),
        "settings-console": settings_table(ConsoleSettings),
        "settings-client": settings_table(ClientSettings),
        "settings-agent": settings_table(AgentSettings, prefix="SENSORMESH_AGENT_", skip={"inputs"}),
        "examples": "```sh\n" + render(Endpoints(), Paths(), indent="") + "```\n",
    }


def regenerate(text: str, generated: dict[str, str]) -> str:
    missing = set(generated) - {m.group("name") for m in SECTION.finditer(text)}
    if missing:
        raise SystemExit(f"README.md has no generated section named {', '.join(sorted(missing))}")
    return SECTION.sub(lambda m: m.group(1) + generated[m.group("name")] + m.group(4), text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if README.md is stale")
    args = parser.parse_args()
    current = README.read_text()
    fresh = regenerate(current, sections())
    if args.check:
        if fresh != current:
            diff = difflib.unified_diff(
                current.splitlines(), fresh.splitlines(), "README.md", "generated", lineterm=""
            )
            print("README.md is stale; run `make readme`:\n" + "\n".join(diff))
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
