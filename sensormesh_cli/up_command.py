"""`sensormesh up`: the whole stack on this machine, until Ctrl-C.

PostgreSQL (embedded under the data folder unless --database-url), the
schema, the ingest, query and control services, Envoy and three simulated devices,
each in its own process with its log in `<data>/logs/`. With --tls every
port they serve is TLS with a certificate from a local CA kept in
`<data>/tls/`, and the devices verify it. Prints where to look and commands
to try. Ctrl-C or SIGTERM stops everything in order, as does a service or
Envoy exiting; a simulated device that exits is reported and restarted while
the rest keeps running. The next start resumes with the data, the devices
and their tokens.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sensormesh_cli.stack.stack import LocalStack, StackOptions
    from sensormesh_cli.stack.status import Status

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="local state: database, tokens, buffers, logs (default .sensormesh)"
    )
    parser.add_argument(
        "--database-url", help="use this PostgreSQL instead of the embedded one (SENSORMESH_DATABASE_URL)"
    )
    parser.add_argument(
        "--no-agent", action="store_true", help="run without the simulated devices (agents and direct device)"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve Envoy, ingest, query and control over TLS with a local CA (made in <data>/tls on first use)",
    )
    ports = parser.add_argument_group("addresses (PORT or HOST:PORT; defaults from SENSORMESH_* settings)")
    ports.add_argument(
        "--http", metavar="ADDRESS", help="Envoy: REST, gRPC, gRPC-Web (default 127.0.0.1:8080)"
    )
    ports.add_argument("--admin", metavar="ADDRESS", help="Envoy admin (default 127.0.0.1:9901)")
    ports.add_argument("--ingest", metavar="ADDRESS", help="ingest service (default 127.0.0.1:50051)")
    ports.add_argument("--query", metavar="ADDRESS", help="query service (default 127.0.0.1:50052)")
    ports.add_argument("--control", metavar="ADDRESS", help="control service (default 127.0.0.1:50053)")
    ports.add_argument(
        "--console",
        metavar="ADDRESS",
        help="web console's file server, behind Envoy (default 127.0.0.1:50054)",
    )


class Signals:
    """First SIGINT/SIGTERM: stop in order. A second one: stop now (kill what is left)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = False
        self.starting = True
        self.on_hurry: Callable[[], None] = lambda: None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.hurry = True
            self.on_hurry()
            return
        self.requested.set()
        if self.starting:
            from sensormesh_cli.stack.status import StopRequested

            raise StopRequested(signal.Signals(signum).name)


def _address(value: str | None, default: str) -> str:
    """PORT or HOST:PORT; a bare port keeps the default's host."""
    if value is None:
        return default
    if value.isdigit():
        return f"{default.rpartition(':')[0]}:{value}"
    return value


def _log_to_file(path: Path, level: str) -> None:
    """This process's own log goes to <data>/logs/up.log; the terminal gets the status lines."""
    from sensormesh_core.logs import LogfmtFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    for existing in root.handlers:
        existing.setLevel(logging.ERROR)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _options(args: argparse.Namespace) -> StackOptions:
    from control_service.settings import ControlSettings
    from ingest_service.settings import IngestSettings
    from query_service.settings import QuerySettings
    from sensormesh_cli.stack.examples import Endpoints
    from sensormesh_cli.stack.settings import StackSettings
    from sensormesh_cli.stack.stack import StackOptions
    from sensormesh_console.command import DEFAULT_LISTEN as DEFAULT_CONSOLE_LISTEN

    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    settings = StackSettings(**overrides)  # type: ignore[arg-type]
    endpoints = Endpoints(
        http=_address(args.http, settings.envoy_listen),
        admin=_address(args.admin, settings.envoy_admin_listen),
        ingest=_address(args.ingest, IngestSettings().ingest_listen),
        query=_address(args.query, QuerySettings().query_listen),
        control=_address(args.control, ControlSettings().control_listen),
        console=_address(args.console, DEFAULT_CONSOLE_LISTEN),
    )
    return StackOptions(storage=settings, endpoints=endpoints, simulate=not args.no_agent, tls=args.tls)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sensormesh_cli.stack.banner import banner
    from sensormesh_cli.stack.stack import LocalStack
    from sensormesh_cli.stack.status import Status, StepFailed, StopRequested

    try:
        options = _options(args)
    except (ValidationError, ValueError) as error:
        print(f"sensormesh up: {error}", file=sys.stderr)
        return 2
    _log_to_file(options.log_dir / "up.log", args.log_level)
    status = Status()
    signals = Signals()
    signals.install()
    stack = LocalStack(options, status)
    signals.on_hurry = stack.kill_children
    status.note(f"sensormesh up: starting; logs in {options.log_dir}/")
    try:
        stack.start()
        signals.starting = False
        status.note(banner(options, stack.running))
        code = supervise(stack, signals, status)
    except StopRequested:
        status.note("stopping (interrupted while starting)")
        code = 0
    except StepFailed as error:
        status.note(f"\nsensormesh up: {error}")
        code = 1
    except BaseException:
        log.exception("event=up_failed")
        stack.stop(lambda: signals.hurry)
        raise
    signals.starting = False
    stack.stop(lambda: signals.hurry)
    status.note(f"stopped. The data stays in {options.data_dir} for the next start.")
    return code


def supervise(stack: LocalStack, signals: Signals, status: Status) -> int:
    """Wait for a signal (0) or a service or Envoy that exits on its own (1). A simulated device
    that exits is reported and restarted; the rest keeps running."""
    from sensormesh_cli.stack.supervisor import DeviceSupervisor

    devices = DeviceSupervisor(stack.running.devices, status)
    while not signals.requested.wait(0.5):
        devices.check()
        crashed = stack.crashed()
        if crashed is not None:
            status.warn(
                f"{crashed.name} exited with status {crashed.exited()}; stopping the stack. "
                f"The end of {crashed.log_path}:\n{crashed.log_tail()}"
            )
            return 1
        if stack.envoy_exited() is not None:
            status.warn(
                f"Envoy exited with status {stack.envoy_exited()}; stopping the stack. "
                f"See {stack.options.log_dir / 'envoy.log'}"
            )
            return 1
    status.note("\nstopping (Ctrl-C again to kill at once)")
    return 0
