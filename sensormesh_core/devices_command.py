"""`sensormesh devices create`: register a device and print its token.

Talks to the database directly, as an operator's tool on the server side.
The token is printed once and never stored; keep it in the agent's config.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sensormesh_core.config import StorageSettings

TYPES = {"gateway": 1, "direct": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="register a device and print its token")
    create.add_argument("device_id", help="lower-case letters, digits and '-', e.g. greenhouse-pi-1")
    create.add_argument("--display-name", default="", help="a name for people (default: the id)")
    create.add_argument("--description", default="")
    create.add_argument("--type", choices=sorted(TYPES), default="gateway", help="default gateway")


async def _create(url: str, args: argparse.Namespace) -> str:
    import asyncpg
    from sensormesh.v1 import device_pb2

    from sensormesh_core import validation
    from sensormesh_core.storage.registry import create_device

    validation.validate(device_pb2.Device(device_id=args.device_id, display_name=args.display_name))
    conn = await asyncpg.connect(url)
    try:
        _, token = await create_device(
            conn,
            args.device_id,
            display_name=args.display_name,
            description=args.description,
            device_type=TYPES[args.type],
        )
    finally:
        await conn.close()
    return token


def run(args: argparse.Namespace) -> int:
    from sensormesh_core.errors import SensormeshError
    from sensormesh_core.storage.database import open_database

    database = open_database(StorageSettings())
    try:
        token = asyncio.run(_create(database.url, args))
    except SensormeshError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        database.close()
    print(f"device {args.device_id} created; its token (shown only now):\n{token}")
    return 0
