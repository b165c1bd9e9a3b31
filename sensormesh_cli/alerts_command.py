"""`sensormesh alerts`: alerts and alert rules over AlertService, with the operator's API key.

    sensormesh alerts list [--state active] [--device greenhouse-pi]
    sensormesh alerts ack 12 | clear 12 | show 12
    sensormesh alerts watch [--device greenhouse-pi]
    sensormesh alerts rules list
    sensormesh alerts rules create too-hot --quantity temperature --above 30 --for 5m --hysteresis 1 --severity major
    sensormesh alerts rules create vibration --anomaly acceleration_z --span 500 --deviations 6
    sensormesh alerts rules create jump --rate-of-change temperature --window 10s --max-change 5 --rise
    sensormesh alerts rules create quiet --no-data 5m --devices greenhouse-pi
    sensormesh alerts rules create driver --agent input-failing
    sensormesh alerts rules create custom --from rule.json      # any rule, as the API's JSON
    sensormesh alerts rules delete too-hot

Every action calls the AlertService gRPC API through Envoy by default (`--server` for another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sensormesh_cli.client import client_arguments

SEVERITIES = ("critical", "major", "minor", "warning", "indeterminate")
STATES = ("active", "cleared", "unacknowledged", "active_unack", "active_ack", "cleared_unack", "cleared_ack")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    client = client_arguments()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[client, output], help="alerts, newest first")
    listing.add_argument("--state", action="append", default=[], choices=STATES)
    listing.add_argument("--severity", action="append", default=[], choices=SEVERITIES)
    listing.add_argument("--device", default="", help="one device's alerts")
    listing.add_argument("--rule", default="", help="one rule's alerts")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    for verb, help_text in (
        ("show", "one alert"),
        ("ack", "acknowledge an alert"),
        ("clear", "clear an alert by hand"),
    ):
        one = actions.add_parser(verb, parents=[client, output], help=help_text)
        one.add_argument("alert_id", type=int)
    watch = actions.add_parser("watch", parents=[client], help="follow alerts as they change (Ctrl-C ends)")
    watch.add_argument("--device", default="", help="one device's alerts")
    watch.add_argument("--severity", action="append", default=[], choices=SEVERITIES)

    rules = actions.add_parser("rules", help="alert rules: create, list, show, delete")
    verbs = rules.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    verbs.add_parser("list", parents=[client, output], help="every rule")
    show = verbs.add_parser("show", parents=[client, output], help="one rule")
    show.add_argument("rule_id")
    delete = verbs.add_parser("delete", parents=[client], help="delete a rule (its active alerts clear)")
    delete.add_argument("rule_id")
    create = verbs.add_parser("create", parents=[client, output], help="create a rule")
    _rule_arguments(create)


def _rule_arguments(create: argparse.ArgumentParser) -> None:
    create.add_argument("rule_id", help="lower-case letters, digits and '-', e.g. greenhouse-too-hot")
    create.add_argument(
        "--from", dest="from_file", type=Path, help="the rule as the API's JSON (- for stdin)"
    )
    create.add_argument("--severity", choices=SEVERITIES, default="major")
    create.add_argument("--name", help="a name for people (default: the id)")
    create.add_argument("--description", default="", help="what it means and what to do (sent with alerts)")
    create.add_argument("--devices", help="device ids (pi-1,pi-2) or labels (site=greenhouse); default: all")
    create.add_argument("--sensors", help="sensor names (bme280,sim-imu); default: all")
    kinds = create.add_argument_group("condition (one)")
    kinds.add_argument(
        "--quantity", help="threshold: the quantity (temperature, acceleration_z, a measurement)"
    )
    kinds.add_argument("--above", type=float, help="threshold: met above this")
    kinds.add_argument("--below", type=float, help="threshold: met below this")
    kinds.add_argument("--outside", metavar="LOW,HIGH", help="threshold: met outside this range")
    kinds.add_argument("--for", dest="hold", metavar="DURATION", help="threshold: held this long first (0)")
    kinds.add_argument("--hysteresis", type=float, default=0.0, help="threshold: clear this far back (0)")
    kinds.add_argument(
        "--rate-of-change", metavar="QUANTITY", help="a change of more than --max-change within --window"
    )
    kinds.add_argument("--window", metavar="DURATION", default="1m")
    kinds.add_argument("--max-change", type=float)
    kinds.add_argument("--rise", action="store_true", help="rate of change: rises only")
    kinds.add_argument("--fall", action="store_true", help="rate of change: falls only")
    kinds.add_argument("--anomaly", metavar="QUANTITY", help="far from its moving average")
    kinds.add_argument("--span", type=int, default=100, help="anomaly: the averages' span in readings (100)")
    kinds.add_argument("--deviations", type=float, default=5.0, help="anomaly: standard deviations away (5)")
    kinds.add_argument("--no-data", metavar="DURATION", help="no reading for this long")
    kinds.add_argument("--agent", choices=("input-failing", "thinning"), help="a condition the agent reports")


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
    from sensormesh.v1 import alert_pb2_grpc

    from sensormesh_cli import alerts_output as out

    stub = alert_pb2_grpc.AlertServiceStub(channel)
    if args.action == "rules":
        if args.rules_action == "create":
            from sensormesh_cli.alert_rule_flags import rule_from

            return out.rule_created(stub, rule_from(args), as_json=args.json)
        if args.rules_action == "list":
            return out.rules_listed(stub, as_json=args.json)
        if args.rules_action == "show":
            return out.rule_shown(stub, args.rule_id, as_json=args.json)
        return out.rule_deleted(stub, args.rule_id)
    if args.action == "list":
        return out.listed(stub, args, as_json=args.json)
    if args.action == "watch":
        return out.watched(stub, args.device, args.severity)
    return out.one(stub, args.action, args.alert_id, as_json=args.json)
