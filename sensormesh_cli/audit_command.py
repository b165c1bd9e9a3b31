"""`sensormesh audit`: the audit log, newest first (admin only).

sensormesh audit                     # the last 50 events
sensormesh audit --actor key:ops-alice --limit 200
"""

from __future__ import annotations

import argparse
import sys

from sensormesh_cli.client import add_client_arguments

TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--actor", default="", help="only this actor, e.g. key:ops-alice or sso:alice")
    parser.add_argument("--limit", type=int, default=50, help="events to show (default 50)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format
    from sensormesh.v1 import audit_pb2, audit_pb2_grpc

    from sensormesh_cli.client import describe_error, open_channel, settings_from
    from sensormesh_cli.devices_output import table

    settings = settings_from(args)
    events: list[audit_pb2.AuditEvent] = []
    try:
        with open_channel(settings) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            token = ""
            while len(events) < args.limit:
                request = audit_pb2.ListAuditEventsRequest(
                    page_size=min(1000, args.limit - len(events)), page_token=token, actor=args.actor
                )
                page = stub.ListAuditEvents(request, timeout=TIMEOUT_S)
                events.extend(page.audit_events)
                token = page.next_page_token
                if not token:
                    break
    except grpc.RpcError as error:
        print(f"error: {describe_error(error, settings.server)}", file=sys.stderr)
        return 1
    if args.json:
        print(json_format.MessageToJson(audit_pb2.ListAuditEventsResponse(audit_events=events), indent=2))
        return 0
    rows = [["TIME", "ACTOR", "METHOD", "RESOURCE", "OUTCOME", "MESSAGE"]]
    for e in events:
        rows.append(
            [
                e.event_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ"),
                e.actor,
                e.method.removeprefix("sensormesh.v1."),
                e.resource or "-",
                e.outcome,
                e.message[:80],
            ]
        )
    print(table(rows))
    return 0
