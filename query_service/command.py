"""`sensormesh query`: run the query service until SIGINT or SIGTERM.

Settings come from the environment (`SENSORMESH_QUERY_LISTEN`, ...); the
database must be migrated (`sensormesh db migrate`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc

from sensormesh_core.stop_signals import stop_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", help="host:port to bind (default: SENSORMESH_QUERY_LISTEN or 127.0.0.1:50052)"
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds open calls get at shutdown (default 10)"
    )


async def _serve(args: argparse.Namespace) -> None:
    from query_service.server import start_query_server
    from query_service.settings import QuerySettings
    from sensormesh_core.telemetry import configure_telemetry

    settings = QuerySettings()
    if args.listen:
        settings.query_listen = args.listen
    telemetry = configure_telemetry("sensormesh-query")
    server = await start_query_server(settings, telemetry=telemetry)
    # Everything allocated at start-up (modules, descriptors, the pool) leaves the
    # collector's view: a full collection then scans only what serving created, and
    # its pause, which stalls every live feed of the process, stays short.
    gc.freeze()
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
