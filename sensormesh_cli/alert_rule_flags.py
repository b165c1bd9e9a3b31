"""`sensormesh alerts rules create`'s flags as the contract's AlertRule (or the API's JSON from a file)."""

from __future__ import annotations

import argparse
import sys

from google.protobuf import json_format
from sensormesh.v1 import alert_pb2

from sensormesh_cli.durations import parse_duration
from sensormesh_core.device_scope import parse_selector


def rule_from(args: argparse.Namespace) -> alert_pb2.AlertRule:
    """The rule the flags describe; ValueError names what is missing or conflicting."""
    if args.from_file is not None:
        text = sys.stdin.read() if str(args.from_file) == "-" else args.from_file.read_text()
        rule = json_format.Parse(text, alert_pb2.AlertRule())
        rule.rule_id = rule.rule_id or args.rule_id
        return rule
    rule = alert_pb2.AlertRule(
        rule_id=args.rule_id,
        severity=alert_pb2.AlertSeverity.Value(f"ALERT_SEVERITY_{args.severity.upper()}"),
        display_name=args.name or "",
        description=args.description,
    )
    if args.devices:
        scope = parse_selector(args.devices)
        rule.devices.device_ids.extend(sorted(scope.device_ids))
        rule.devices.labels.update(scope.labels)
    if args.sensors:
        rule.sensors.extend(s.strip() for s in args.sensors.split(",") if s.strip())
    _condition(rule, args)
    return rule


def _condition(rule: alert_pb2.AlertRule, args: argparse.Namespace) -> None:
    chosen = [
        name
        for name, given in (
            ("--quantity", args.quantity),
            ("--rate-of-change", args.rate_of_change),
            ("--anomaly", args.anomaly),
            ("--no-data", args.no_data),
            ("--agent", args.agent),
        )
        if given
    ]
    if len(chosen) != 1:
        raise ValueError(
            "give one condition: --quantity with --above/--below/--outside, --rate-of-change, --anomaly, "
            f"--no-data or --agent (got {', '.join(chosen) or 'none'})"
        )
    if args.quantity:
        _threshold(rule.threshold, args)
    elif args.rate_of_change:
        if args.max_change is None:
            raise ValueError("--rate-of-change needs --max-change")
        rule.rate_of_change.quantity = args.rate_of_change
        rule.rate_of_change.window.FromTimedelta(parse_duration(args.window, "--window"))
        rule.rate_of_change.max_change = args.max_change
        rule.rate_of_change.direction = 1 if args.rise else 2 if args.fall else 0  # type: ignore[assignment]
    elif args.anomaly:
        rule.anomaly.quantity = args.anomaly
        rule.anomaly.span = args.span
        rule.anomaly.deviations = args.deviations
    elif args.no_data:
        rule.no_data.silence.FromTimedelta(parse_duration(args.no_data, "--no-data"))
    else:
        rule.agent.kind = (
            alert_pb2.AGENT_CONDITION_KIND_INPUT_FAILING
            if args.agent == "input-failing"
            else alert_pb2.AGENT_CONDITION_KIND_THINNING
        )


def _threshold(threshold: alert_pb2.ThresholdCondition, args: argparse.Namespace) -> None:
    threshold.quantity = args.quantity
    limits = [
        flag
        for flag, value in (("--above", args.above), ("--below", args.below), ("--outside", args.outside))
        if value is not None
    ]
    if len(limits) != 1:
        raise ValueError("--quantity needs one of --above, --below or --outside LOW,HIGH")
    if args.above is not None:
        threshold.above = args.above
    elif args.below is not None:
        threshold.below = args.below
    else:
        try:
            low, high = (float(v) for v in args.outside.split(","))
        except ValueError:
            raise ValueError(f"--outside {args.outside!r}: expected LOW,HIGH") from None
        threshold.outside.low, threshold.outside.high = low, high
    if args.hold:
        threshold.for_duration.FromTimedelta(parse_duration(args.hold, "--for"))
    threshold.hysteresis = args.hysteresis
