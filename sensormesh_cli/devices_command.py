"""`sensormesh devices create|list|get|update|delete|rotate-token`: the device registry over
DeviceService, with the operator's API key (see `sensormesh_cli.client`).

Every action calls the DeviceService gRPC API (through Envoy by default,
`--server` or SENSORMESH_SERVER for another address), so it works against
`sensormesh up`, a cluster, or a query service alike. One exception, for
bootstrap: `create --database-url URL` writes the registry straight into that
database, for when no query service runs yet.

A token is shown once, at creation; `--token-file` writes it to a file only
its owner can read, ready for the agent's `token_file` or a systemd credential.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sensormesh_cli.client import ClientSettings, client_arguments

if TYPE_CHECKING:
    from sensormesh.v1 import device_pb2

TYPES = {"gateway": 1, "direct": 2}
STATUSES = {"active": 1, "disabled": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    client = client_arguments()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", parents=[client, output], help="register a device; prints its token once"
    )
    create.add_argument("device_id", help="lower-case letters, digits and '-', e.g. greenhouse-pi-1")
    _device_fields(create)
    create.add_argument("--token-file", type=Path, help="also write the token to this file (mode 0600)")
    create.add_argument(
        "--database-url",
        help="bootstrap: write to this PostgreSQL directly instead of calling DeviceService",
    )
    create.add_argument(
        "--reregister",
        action="store_true",
        help="take the id of a device that was deleted (admin; the old device's token stays dead)",
    )

    listing = actions.add_parser("list", parents=[client, output], help="list devices (all pages)")
    listing.add_argument("--status", choices=sorted(STATUSES), help="only devices of this status")
    listing.add_argument("--type", choices=sorted(TYPES), help="only devices of this type")
    listing.add_argument(
        "--order-by",
        choices=["battery", "id", "signal"],  # devices_output.ORDERS
        default="id",
        help="id (default), battery (lowest first) or signal (weakest first); devices without one come last",
    )

    get = actions.add_parser(
        "get", parents=[client, output], help="a device with its sensors and input states"
    )
    get.add_argument("device_id")

    update = actions.add_parser("update", parents=[client, output], help="change the fields given")
    update.add_argument("device_id")
    _device_fields(update)
    update.add_argument(
        "--status", choices=sorted(STATUSES), help="disabled: refuse its writes, keep its data"
    )
    update.add_argument("--clear-labels", action="store_true", help="remove every label (before --label)")

    delete = actions.add_parser("delete", parents=[client], help="delete a device and all its readings")
    delete.add_argument("device_id")
    delete.add_argument("--yes", action="store_true", help="do not ask (required when not on a terminal)")

    rotate = actions.add_parser(
        "rotate-token", parents=[client], help="issue a new token; the old one stops within 10 s"
    )
    rotate.add_argument("device_id")
    rotate.add_argument("--token-file", type=Path, help="also write the token to this file (mode 0600)")


def _device_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--display-name", help="a name for people (default: the id)")
    parser.add_argument("--description")
    parser.add_argument(
        "--type", choices=sorted(TYPES), help="gateway (runs the agent) or direct (writes itself)"
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a label; repeat for more"
    )


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _device(args: argparse.Namespace) -> device_pb2.Device:
    from sensormesh.v1 import device_pb2

    device = device_pb2.Device(device_id=args.device_id, labels=_labels(args.label))
    if args.display_name is not None:
        device.display_name = args.display_name
    if args.description is not None:
        device.description = args.description
    if args.type is not None:
        device.type = TYPES[args.type]  # type: ignore[assignment]
    if getattr(args, "status", None) is not None:
        device.status = STATUSES[args.status]  # type: ignore[assignment]
    return device


def run(args: argparse.Namespace) -> int:
    import grpc

    from sensormesh_cli.client import describe_error, settings_from
    from sensormesh_core.errors import SensormeshError

    settings = settings_from(args)
    try:
        if args.action == "create" and args.database_url:
            return _create_directly(args)
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
    from sensormesh.v1 import device_pb2_grpc

    from sensormesh_cli import devices_output as out
    from sensormesh_cli.client import open_channel

    with open_channel(settings) as channel:
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        if args.action == "create":
            return out.created(
                stub, _device(args), args.token_file, as_json=args.json, reregister=args.reregister
            )
        if args.action == "rotate-token":
            return out.rotated(stub, args.device_id, args.token_file)
        if args.action == "list":
            status = STATUSES.get(args.status or "", 0)
            type_ = TYPES.get(args.type or "", 0)
            return out.listed(stub, status, type_, as_json=args.json, order_by=out.ORDERS[args.order_by])
        if args.action == "get":
            return out.got(stub, args.device_id, as_json=args.json)
        if args.action == "update":
            return out.updated(stub, _device(args), _mask(args), as_json=args.json)
        if not args.yes and not _confirm(args.device_id):
            print("not deleted", file=sys.stderr)
            return 1
        return out.deleted(stub, args.device_id)


def _mask(args: argparse.Namespace) -> list[str]:
    """The update mask: exactly the fields given on the command line."""
    paths = [
        name
        for name, flag in (
            ("display_name", args.display_name),
            ("description", args.description),
            ("type", args.type),
            ("status", args.status),
        )
        if flag is not None
    ]
    if args.label or args.clear_labels:
        paths.append("labels")
    if not paths:
        raise ValueError("nothing to update: give --display-name, --description, --type, --status or --label")
    return paths


def _confirm(device_id: str) -> bool:
    if not sys.stdin.isatty():
        print("error: deleting removes every reading of the device; add --yes to confirm", file=sys.stderr)
        return False
    answer = input(f"delete {device_id} and every reading it wrote? type its id to confirm: ")
    return answer.strip() == device_id


def _create_directly(args: argparse.Namespace) -> int:
    import asyncio

    from sensormesh_cli import devices_output as out
    from sensormesh_core import validation

    device = _device(args)
    validation.validate(device)
    token = asyncio.run(_insert(args.database_url, device, args.reregister))
    out.print_token(device.device_id, token, args.token_file)
    return 0


async def _insert(url: str, device: device_pb2.Device, args_reregister: bool) -> str:
    import asyncpg

    from sensormesh_core.storage.registry import create_device

    conn = await asyncpg.connect(url)
    try:
        _, token = await create_device(
            conn,
            device.device_id,
            reregister=args_reregister,
            display_name=device.display_name,
            description=device.description,
            device_type=device.type or TYPES["gateway"],
            labels=dict(device.labels),
        )
    finally:
        await conn.close()
    return token
