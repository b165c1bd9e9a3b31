"""`sensormesh keys create|list|revoke`: operator API keys over AccessService (admin only).

A key is printed once, at creation (`--key-file` also writes it to a file only
its owner can read). Bootstrap, before any admin key exists: `create
--database-url URL` writes the key straight into that database; `revoke
--database-url URL` is the same way back when every admin key is lost.

    sensormesh keys create grafana --role viewer --devices site=greenhouse --expires 90d
    sensormesh keys list
    sensormesh keys revoke grafana
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sensormesh_cli import durations
from sensormesh_cli.client import ClientSettings, client_arguments
from sensormesh_core.access.principal import ROLES_BY_NAME

if TYPE_CHECKING:
    from sensormesh.v1 import access_pb2, access_pb2_grpc

TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    client = client_arguments()
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", parents=[client], help="create a key; prints it once")
    create.add_argument("name", help="lower-case letters, digits and '-', e.g. grafana-reader")
    create.add_argument("--role", choices=list(ROLES_BY_NAME), required=True, help="what the key may do")
    create.add_argument(
        "--devices",
        metavar="SELECTOR",
        help="only these devices: ids (pi-1,pi-2) or labels (site=greenhouse,tier=prod)",
    )
    create.add_argument("--expires", metavar="DURATION", help="e.g. 90d, 12h, 30m or ISO 8601 (P90D)")
    create.add_argument("--key-file", type=Path, help="also write the key to this file (mode 0600)")
    create.add_argument("--json", action="store_true", help="print the API's JSON")
    create.add_argument("--database-url", help="bootstrap: write to this PostgreSQL directly")

    listing = actions.add_parser("list", parents=[client], help="list keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")

    revoke = actions.add_parser("revoke", parents=[client], help="revoke a key; refused within 10 s")
    revoke.add_argument("name")
    revoke.add_argument("--database-url", help="write to this PostgreSQL directly")


def parse_duration(text: str) -> timedelta:
    """`--expires`: see sensormesh_cli.durations."""
    return durations.parse_duration(text, "--expires")


def _api_key(args: argparse.Namespace) -> access_pb2.ApiKey:
    from sensormesh.v1 import access_pb2

    from sensormesh_core.device_scope import parse_selector

    key = access_pb2.ApiKey(name=args.name, role=ROLES_BY_NAME[args.role])  # type: ignore[arg-type]
    if args.devices:
        scope = parse_selector(args.devices)
        key.device_scope.device_ids.extend(sorted(scope.device_ids))
        key.device_scope.labels.update(scope.labels)
    if args.expires:
        key.expire_time.FromDatetime(datetime.now(UTC) + parse_duration(args.expires))
    return key


def run(args: argparse.Namespace) -> int:
    import grpc

    from sensormesh_cli.client import describe_error, settings_from
    from sensormesh_core.errors import SensormeshError

    settings = settings_from(args)
    try:
        if getattr(args, "database_url", None):
            return _directly(args)
        return _call(args, settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SensormeshError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"error: {describe_error(error, settings.server)}", file=sys.stderr)
        return 1


def _call(args: argparse.Namespace, settings: ClientSettings) -> int:
    from sensormesh.v1 import access_pb2, access_pb2_grpc

    from sensormesh_cli import keys_output as out
    from sensormesh_cli.client import open_channel

    with open_channel(settings) as channel:
        stub = access_pb2_grpc.AccessServiceStub(channel)
        if args.action == "create":
            request = access_pb2.CreateApiKeyRequest(api_key=_api_key(args))
            response = stub.CreateApiKey(request, timeout=TIMEOUT_S)
            return out.created(response, args.key_file, as_json=args.json)
        if args.action == "list":
            return out.listed(_pages(stub, show_revoked=args.all), as_json=args.json)
        response = stub.RevokeApiKey(access_pb2.RevokeApiKeyRequest(name=args.name), timeout=TIMEOUT_S)
        print(f"key {response.api_key.name} revoked; it is refused within 10 s")
        return 0


def _pages(stub: access_pb2_grpc.AccessServiceStub, *, show_revoked: bool) -> list[access_pb2.ApiKey]:
    from sensormesh.v1 import access_pb2

    keys: list[access_pb2.ApiKey] = []
    token = ""
    while True:
        request = access_pb2.ListApiKeysRequest(page_size=1000, page_token=token, show_revoked=show_revoked)
        page = stub.ListApiKeys(request, timeout=TIMEOUT_S)
        keys.extend(page.api_keys)
        token = page.next_page_token
        if not token:
            return keys


def _directly(args: argparse.Namespace) -> int:
    import asyncio

    from sensormesh.v1 import access_pb2

    from sensormesh_cli import keys_output as out
    from sensormesh_core import validation

    if args.action == "create":
        key = _api_key(args)
        validation.validate(key)
        record, secret = asyncio.run(_create(args.database_url, key))
        response = access_pb2.CreateApiKeyResponse(api_key=record, key=secret)
        return out.created(response, args.key_file, as_json=args.json)
    if args.action == "revoke":
        asyncio.run(_revoke(args.database_url, args.name))
        print(f"key {args.name} revoked; it is refused within 10 s")
        return 0
    raise ValueError("--database-url works with create and revoke")


async def _create(url: str, key: access_pb2.ApiKey) -> tuple[access_pb2.ApiKey, str]:
    import asyncpg

    from sensormesh_core.access.api_key_messages import api_key_message
    from sensormesh_core.device_scope import DeviceScope
    from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key

    conn = await asyncpg.connect(url)
    try:
        record, secret = await create_key(
            conn,
            key.name,
            key.role,
            creator=LOCAL_CREATOR,
            scope=DeviceScope.of(key.device_scope.device_ids, dict(key.device_scope.labels)),
            expire_time=key.expire_time.ToDatetime(tzinfo=UTC) if key.HasField("expire_time") else None,
        )
    finally:
        await conn.close()
    return api_key_message(record), secret


async def _revoke(url: str, name: str) -> None:
    import asyncpg

    from sensormesh_core.storage.api_keys import revoke_key

    conn = await asyncpg.connect(url)
    try:
        await revoke_key(conn, name)
    finally:
        await conn.close()
