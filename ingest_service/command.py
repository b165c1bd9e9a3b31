"""`sensormesh ingest`: run the ingest service until SIGTERM or Ctrl-C.

Settings come from the environment (`SENSORMESH_INGEST_*`, `SENSORMESH_*`,
see README); `--listen` overrides the address. On SIGTERM the service stops
taking calls, commits the batches it has received, and exits 0 within
`SENSORMESH_INGEST_SHUTDOWN_GRACE`.
"""

from __future__ import annotations

import argparse
import asyncio

from sensormesh_core.stop_signals import stop_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", help="host:port to serve on (default: SENSORMESH_INGEST_LISTEN, else 127.0.0.1:50051)"
    )


async def _serve(args: argparse.Namespace) -> int:
    from ingest_service.server import start
    from ingest_service.settings import IngestSettings
    from sensormesh_core.telemetry import configure_telemetry

    settings = IngestSettings(**({"ingest_listen": args.listen} if args.listen else {}))
    telemetry = configure_telemetry("sensormesh-ingest")
    stop = asyncio.Event()
    with stop_on_signals(stop.set):
        handle = await start(settings, telemetry=telemetry)
        try:
            await stop.wait()
        finally:
            await handle.stop(settings.ingest_shutdown_grace.total_seconds())
            telemetry.shutdown()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
