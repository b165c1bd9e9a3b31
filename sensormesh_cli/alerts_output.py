"""What `sensormesh alerts` prints: tables and lines for people, the API's JSON with --json."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import alert_pb2, alert_pb2_grpc

from sensormesh_cli.devices_output import table

TIMEOUT_S = 30.0
A = alert_pb2
STATE_GROUPS = {
    "active": (A.ALERT_STATE_ACTIVE_UNACK, A.ALERT_STATE_ACTIVE_ACK),
    "cleared": (A.ALERT_STATE_CLEARED_UNACK, A.ALERT_STATE_CLEARED_ACK),
    "unacknowledged": (A.ALERT_STATE_ACTIVE_UNACK, A.ALERT_STATE_CLEARED_UNACK),
}


def _json(message: Any) -> str:
    return json_format.MessageToJson(message, indent=2)


def _time(value: Timestamp, present: bool = True) -> str:
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if present else "-"


def _state(number: int) -> str:
    return A.AlertState.Name(number).removeprefix("ALERT_STATE_")  # type: ignore[arg-type]


def _severity(number: int) -> str:
    return A.AlertSeverity.Name(number).removeprefix("ALERT_SEVERITY_").lower()  # type: ignore[arg-type]


def states(names: list[str]) -> list[int]:
    found: set[int] = set()
    for name in names:
        group = STATE_GROUPS.get(name)
        found.update(group if group else (A.AlertState.Value(f"ALERT_STATE_{name.upper()}"),))
    return sorted(found)


def _pages(stub: alert_pb2_grpc.AlertServiceStub, args: argparse.Namespace) -> Iterator[A.Alert]:
    token, left = "", args.limit
    severities = [A.AlertSeverity.Value(f"ALERT_SEVERITY_{s.upper()}") for s in args.severity]
    while left > 0:
        request = A.ListAlertsRequest(
            states=states(args.state),  # type: ignore[arg-type]
            severities=severities,
            device_id=args.device,
            rule_id=args.rule,
            page_size=min(left, 1000),
            page_token=token,
        )
        page = stub.ListAlerts(request, timeout=TIMEOUT_S)
        yield from page.alerts
        left -= len(page.alerts)
        token = page.next_page_token
        if not token:
            return


def listed(stub: alert_pb2_grpc.AlertServiceStub, args: argparse.Namespace, *, as_json: bool) -> int:
    found = list(_pages(stub, args))
    if as_json:
        print(_json(A.ListAlertsResponse(alerts=found)))
        return 0
    rows = [["ID", "STATE", "SEVERITY", "RULE", "DEVICE", "SENSOR", "COUNT", "SINCE", "MESSAGE"]]
    for a in found:
        rows.append(
            [
                str(a.alert_id),
                _state(a.state),
                _severity(a.severity),
                a.rule_id,
                a.device_id,
                a.sensor or "-",
                str(a.count),
                _time(a.first_time),
                a.message,
            ]
        )
    print(table(rows))
    print(f"{len(found)} alert{'s' if len(found) != 1 else ''}")
    return 0


def line(a: A.Alert) -> str:
    where = f"{a.device_id}/{a.sensor}" if a.sensor else a.device_id
    return f"{a.alert_id}  {_state(a.state)}  {_severity(a.severity)}  {a.rule_id}  {where}  x{a.count}  {a.message}"


def details(a: A.Alert) -> str:
    lines = [
        f"alert         {a.alert_id} ({a.rule_id})",
        f"state         {_state(a.state)}",
        f"severity      {_severity(a.severity)}",
        f"device        {a.device_id}" + (f", sensor {a.sensor}" if a.sensor else ""),
        f"message       {a.message}",
        f"count         {a.count} readings met the condition, the last {a.last_value:g} at {_time(a.last_time)}",
        f"first         {_time(a.first_time)}",
        f"raised        {_time(a.create_time)}",
        f"cleared       {_time(a.clear_time, a.HasField('clear_time'))}"
        + (f" by {a.cleared_by}" if a.cleared_by else ""),
        f"acknowledged  {_time(a.acknowledge_time, a.HasField('acknowledge_time'))}"
        + (f" by {a.acknowledged_by}" if a.acknowledged_by else ""),
    ]
    return "\n".join(lines)


def one(stub: alert_pb2_grpc.AlertServiceStub, verb: str, alert_id: int, *, as_json: bool) -> int:
    if verb == "ack":
        alert = stub.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=alert_id), timeout=TIMEOUT_S).alert
    elif verb == "clear":
        alert = stub.ClearAlert(A.ClearAlertRequest(alert_id=alert_id), timeout=TIMEOUT_S).alert
    else:
        alert = stub.GetAlert(A.GetAlertRequest(alert_id=alert_id), timeout=TIMEOUT_S).alert
    if as_json:
        print(_json(alert))
    elif verb == "show":
        print(details(alert))
    else:
        print(f"alert {alert.alert_id}: {_state(alert.state)}")
    return 0


def watched(stub: alert_pb2_grpc.AlertServiceStub, device_id: str, severity: list[str]) -> int:
    severities = [A.AlertSeverity.Value(f"ALERT_SEVERITY_{s.upper()}") for s in severity]
    for change in stub.WatchAlerts(A.WatchAlertsRequest(device_id=device_id, severities=severities)):
        if change.HasField("alert"):
            print(line(change.alert), flush=True)
    return 0


def rule_created(stub: alert_pb2_grpc.AlertServiceStub, rule: A.AlertRule, *, as_json: bool) -> int:
    created = stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule), timeout=TIMEOUT_S).alert_rule
    print(_json(created) if as_json else f"rule {created.rule_id} created: {describe(created)}")
    return 0


def describe(rule: A.AlertRule) -> str:
    """A rule in a few words: `temperature above 30 for 300s, major`."""
    which = rule.WhichOneof("condition")
    if which == "threshold":
        t = rule.threshold
        limit = t.WhichOneof("limit")
        bound = {"above": f"above {t.above:g}", "below": f"below {t.below:g}"}.get(
            limit or "", f"outside {t.outside.low:g}..{t.outside.high:g}"
        )
        held = (
            f" for {t.for_duration.ToTimedelta().total_seconds():g}s" if t.for_duration.ToTimedelta() else ""
        )
        what = f"{t.quantity} {bound}{held}"
    elif which == "rate_of_change":
        r = rule.rate_of_change
        what = f"{r.quantity} changing by more than {r.max_change:g} within {r.window.ToTimedelta().total_seconds():g}s"
    elif which == "anomaly":
        what = f"{rule.anomaly.quantity} {rule.anomaly.deviations:g} deviations from its {rule.anomaly.span}-reading average"
    elif which == "no_data":
        what = f"no reading for {rule.no_data.silence.ToTimedelta().total_seconds():g}s"
    else:
        what = A.AgentConditionKind.Name(rule.agent.kind).removeprefix("AGENT_CONDITION_KIND_").lower()
    return f"{what}, {_severity(rule.severity)}" + (" (disabled)" if rule.disabled else "")


def rules_listed(stub: alert_pb2_grpc.AlertServiceStub, *, as_json: bool) -> int:
    found, token = [], ""
    while True:
        page = stub.ListAlertRules(
            A.ListAlertRulesRequest(page_size=1000, page_token=token), timeout=TIMEOUT_S
        )
        found += list(page.alert_rules)
        token = page.next_page_token
        if not token:
            break
    if as_json:
        print(_json(A.ListAlertRulesResponse(alert_rules=found)))
        return 0
    rows = [["RULE", "CONDITION", "DEVICES", "NAME"]]
    for r in found:
        devices = (
            ",".join(r.devices.device_ids)
            or ",".join(f"{k}={v}" for k, v in r.devices.labels.items())
            or "all"
        )
        rows.append([r.rule_id, describe(r), devices, r.display_name])
    print(table(rows))
    print(f"{len(found)} rule{'s' if len(found) != 1 else ''}")
    return 0


def rule_shown(stub: alert_pb2_grpc.AlertServiceStub, rule_id: str, *, as_json: bool) -> int:
    rule = stub.GetAlertRule(A.GetAlertRuleRequest(rule_id=rule_id), timeout=TIMEOUT_S).alert_rule
    print(_json(rule) if as_json else f"{rule.rule_id}: {describe(rule)}\n{rule.description}".rstrip())
    return 0


def rule_deleted(stub: alert_pb2_grpc.AlertServiceStub, rule_id: str) -> int:
    response = stub.DeleteAlertRule(A.DeleteAlertRuleRequest(rule_id=rule_id), timeout=TIMEOUT_S)
    print(f"rule {rule_id} deleted; {response.cleared_count} active alert(s) cleared")
    return 0
