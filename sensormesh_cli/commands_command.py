"""`sensormesh commands send|list|show|cancel|watch`: commands to devices over CommandService,
with the operator's API key (see `sensormesh_cli.client`).

    sensormesh commands send greenhouse-pi ping --wait
    sensormesh commands send vibration-pi set_interval --param input=imu --param seconds=0.02
    sensormesh commands list greenhouse-pi --state queued --state sent
    sensormesh commands show greenhouse-pi 42
    sensormesh commands cancel greenhouse-pi 42
    sensormesh commands watch            # every device's commands as they change

A `--param` value is read as JSON when it is JSON (0.5, true, "text", [1,2]),
and as text otherwise (imu). Every action calls the CommandService gRPC API
through Envoy by default (`--server` for another address).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sensormesh_cli.client import client_arguments
from sensormesh_core.command_states import STATES_BY_NAME

ALL_DEVICES = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    client = client_arguments()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    send = actions.add_parser("send", parents=[client, output], help="send a command to a device")
    send.add_argument("device_id")
    send.add_argument("name", help="a command the device advertises: ping, status, set_interval, ...")
    send.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter; repeat for more"
    )
    send.add_argument("--ttl", type=float, metavar="SECONDS", help="expire if not delivered by then (1 h)")
    send.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="the device's time for a result once delivered (60)"
    )
    send.add_argument("--request-id", default="", help="makes a retried send return the first command")
    send.add_argument(
        "--wait", action="store_true", help="follow the command to its end; exit 0 only if it succeeded"
    )

    listing = actions.add_parser("list", parents=[client, output], help="commands, newest first")
    listing.add_argument("device_id", nargs="?", default=ALL_DEVICES, help="one device (default: all)")
    listing.add_argument(
        "--state", action="append", default=[], choices=sorted(s.lower() for s in STATES_BY_NAME)
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    show = actions.add_parser("show", parents=[client, output], help="one command, its times and result")
    show.add_argument("device_id")
    show.add_argument("command_id", type=int)

    cancel = actions.add_parser("cancel", parents=[client, output], help="cancel a command not yet delivered")
    cancel.add_argument("device_id")
    cancel.add_argument("command_id", type=int)

    watch = actions.add_parser("watch", parents=[client], help="follow commands as they change (Ctrl-C ends)")
    watch.add_argument("device_id", nargs="?", default=ALL_DEVICES, help="one device (default: all)")


def parameters(pairs: list[str]) -> dict[str, Any]:
    """`--param` values: JSON when they parse, text otherwise."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(text)
        except ValueError:
            values[key] = text
    return values


def run(args: argparse.Namespace) -> int:
    import grpc

    from sensormesh_cli.client import describe_error, open_channel, settings_from

    settings = settings_from(args)
    try:
        with open_channel(settings) as channel:
            return _act(args, channel)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"error: {describe_error(error, settings.server)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _act(args: argparse.Namespace, channel: Any) -> int:
    from sensormesh.v1 import command_pb2_grpc

    from sensormesh_cli import commands_output as out

    stub = command_pb2_grpc.CommandServiceStub(channel)
    if args.action == "send":
        command = out.sent(stub, args, parameters(args.param))
        return out.waited(stub, command, as_json=args.json) if args.wait else 0
    if args.action == "list":
        states = [STATES_BY_NAME[s.upper()] for s in args.state]
        return out.listed(stub, args.device_id, states, args.limit, as_json=args.json)
    if args.action == "show":
        return out.shown(stub, args.device_id, args.command_id, as_json=args.json)
    if args.action == "cancel":
        return out.canceled(stub, args.device_id, args.command_id, as_json=args.json)
    return out.watched(stub, args.device_id)
