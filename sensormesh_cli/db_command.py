"""`sensormesh db`: migrate, downgrade, show the revision, apply storage policies, refresh rollups."""

from __future__ import annotations

import argparse
import asyncio
import sys

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
    actions.add_parser(
        "refresh-rollups",
        help="bring the rollups up to date now (otherwise ingest, or TimescaleDB's policies, do it every minute)",
    )


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


async def _refresh_rollups(url: str, settings: StorageSettings) -> int:
    import asyncpg

    from sensormesh_core.storage.continuous_aggregates import refresh_continuous_aggregates
    from sensormesh_core.storage.rollups import has_rollup_tables, refresh_rollups

    conn = await asyncpg.connect(url)
    try:
        if not await has_rollup_tables(conn):
            for done in await refresh_continuous_aggregates(conn, settings):
                print(f"refreshed={done.view} start={done.start.isoformat()} end={done.end.isoformat()}")
            return 0
        while True:
            report = await refresh_rollups(conn, settings)
            if not report.ran:
                print("another process is refreshing the rollups; try again later")
                return 1
            print(
                f"horizon={report.horizon.isoformat() if report.horizon else '-'} "
                f"minute_rows={report.minute_rows} hour_rows={report.hour_rows} "
                f"invalidations={report.invalidations} expired_rows={report.expired_rows}"
            )
            if report.caught_up:
                return 0
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    from sensormesh_core.storage import migrate
    from sensormesh_core.storage.database import open_database
    from sensormesh_core.storage.timescaledb_probe import TimescaleUnavailable

    settings = StorageSettings()
    if getattr(args, "timescaledb", None):
        settings.timescaledb = TimescaleMode(args.timescaledb)
    database = open_database(settings)
    try:
        if args.action == "migrate":
            try:
                migrate.upgrade(database.url, timescaledb=settings.timescaledb)
            except TimescaleUnavailable as unavailable:
                print(f"sensormesh db migrate: {unavailable}", file=sys.stderr)
                return 1
            asyncio.run(_maintain(database.url, settings))
            print(f"schema at revision {migrate.current_revision(database.url)}")
        elif args.action == "downgrade":
            migrate.downgrade(database.url, args.revision)
            print(f"schema at revision {migrate.current_revision(database.url) or 'base'}")
        elif args.action == "current":
            print(migrate.current_revision(database.url) or "base")
        elif args.action == "maintain":
            asyncio.run(_maintain(database.url, settings))
        elif args.action == "refresh-rollups":
            return asyncio.run(_refresh_rollups(database.url, settings))
    finally:
        database.close()
    return 0
