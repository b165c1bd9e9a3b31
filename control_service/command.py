"""`sensormesh control`: run the control service until SIGINT or SIGTERM.

Settings come from the environment (`SENSORMESH_CONTROL_LISTEN`, ...); the
database must be migrated (`sensormesh db migrate`).
"""

from __future__ import annotations

import argparse
import asyncio

from sensormesh_core.stop_signals import stop_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", help="host:port to bind (default: SENSORMESH_CONTROL_LISTEN or 127.0.0.1:50053)"
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds open calls get at shutdown (default 10)"
    )


async def _serve(args: argparse.Namespace) -> None:
    from control_service.server import start_control_server
    from control_service.settings import ControlSettings
    from sensormesh_core.telemetry import configure_telemetry

    settings = ControlSettings()
    if args.listen:
        settings.control_listen = args.listen
    telemetry = configure_telemetry("sensormesh-control")
    server = await start_control_server(settings, telemetry=telemetry)
    stop = asyncio.Event()
    with stop_on_signals(stop.set):
        try:
            await stop.wait()
        finally:
            await server.stop(args.grace)
            telemetry.shutdown()


def run(args: argparse.Namespace) -> int:
    asyncio.run(_serve(args))
    return 0
