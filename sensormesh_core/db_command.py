"""`sensormesh db`: migrate, downgrade, show the revision, apply storage policies."""

from __future__ import annotations

import argparse
import asyncio

from sensormesh_core.config import StorageSettings, TimescaleMode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser("migrate", help="migrate to the latest schema and apply storage policies")
    migrate.add_argument(
        "--timescaledb",
        choices=[m.value for m in TimescaleMode],
        help="override SENSORMESH_TIMESCALEDB for a first migration",
    )
    down = actions.add_parser("downgrade", help="migrate down (default: remove every sensormesh table)")
    down.add_argument("revision", nargs="?", default="base")
    actions.add_parser("current", help="print the schema revision")
    actions.add_parser("maintain", help="apply retention, compression and partitions from settings")


async def _maintain(url: str, settings: StorageSettings) -> None:
    import asyncpg

    from sensormesh_core.storage.maintenance import maintain

    conn = await asyncpg.connect(url)
    try:
        report = await maintain(conn, settings, apply_policies=True)
    finally:
        await conn.close()
    print(
        f"backend={report.backend.value} partitions_created={len(report.partitions_created)} "
        f"partitions_dropped={len(report.partitions_dropped)} policies={len(report.policies_applied)}"
    )


def run(args: argparse.Namespace) -> int:
    from sensormesh_core.storage import migrate
    from sensormesh_core.storage.database import open_database

    settings = StorageSettings()
    if getattr(args, "timescaledb", None):
        settings.timescaledb = TimescaleMode(args.timescaledb)
    database = open_database(settings)
    try:
        if args.action == "migrate":
            migrate.upgrade(database.url, timescaledb=settings.timescaledb)
            asyncio.run(_maintain(database.url, settings))
            print(f"schema at revision {migrate.current_revision(database.url)}")
        elif args.action == "downgrade":
            migrate.downgrade(database.url, args.revision)
            print(f"schema at revision {migrate.current_revision(database.url) or 'base'}")
        elif args.action == "current":
            print(migrate.current_revision(database.url) or "base")
        elif args.action == "maintain":
            asyncio.run(_maintain(database.url, settings))
    finally:
        database.close()
    return 0
