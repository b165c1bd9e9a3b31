"""`sensormesh console`: serve the built web console until SIGINT or SIGTERM.

Envoy routes `/`, `/assets/` and `/console-config.json` here (envoy/envoy.yaml);
`sensormesh up` starts it. Single sign-on comes from `SENSORMESH_CONSOLE_SSO_*`
(settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sensormesh_console.server import ConsoleNotBuilt, ConsoleServer
from sensormesh_core.stop_signals import stop_on_signals

DEFAULT_LISTEN = "127.0.0.1:50054"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port to bind (default {DEFAULT_LISTEN})"
    )


async def _serve(server: ConsoleServer) -> None:
    stop = asyncio.Event()
    with stop_on_signals(stop.set):
        server.start()
        try:
            await stop.wait()
        finally:
            server.stop()


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sensormesh_console.settings import ConsoleSettings, describe

    try:
        config = ConsoleSettings().config()
    except ValidationError as error:
        print(f"sensormesh console: {describe(error)}", file=sys.stderr)  # noqa: T201 - the command's own error
        return 2
    host, _, port = args.listen.rpartition(":")
    try:
        server = ConsoleServer(host.strip("[]"), int(port), config=config)
    except ConsoleNotBuilt as missing:
        print(f"sensormesh console: {missing}")  # noqa: T201 - the command's own error
        return 2
    asyncio.run(_serve(server))
    return 0
