"""UpdateAlertRule's field mask: which parts of a rule a request may change, and how."""

from __future__ import annotations

from sensormesh.v1 import alert_pb2

from sensormesh_core.errors import FieldViolation, InvalidArgument

CONDITIONS = ("threshold", "rate_of_change", "anomaly", "no_data", "agent")
UPDATABLE = (
    "display_name",
    "description",
    "severity",
    "disabled",
    "devices",
    "sensors",
    "condition",
    *CONDITIONS,
)
# Paths whose change makes the rule judge something else: its alerts and its memory start afresh.
RESTARTING = {"devices", "sensors", "condition", *CONDITIONS}


def merged(
    stored: alert_pb2.AlertRule, request: alert_pb2.UpdateAlertRuleRequest
) -> tuple[alert_pb2.AlertRule, bool]:
    """The stored rule with the request's masked fields; and whether what it judges changed."""
    paths = list(request.update_mask.paths) or _set_fields(request.alert_rule)
    bad = [p for p in paths if p not in UPDATABLE]
    if bad:
        raise InvalidArgument(
            "update_mask names fields that cannot be updated: " + ", ".join(bad),
            [FieldViolation("update_mask", f"{p!r} is not one of {', '.join(UPDATABLE[:7])}") for p in bad],
        )
    rule = alert_pb2.AlertRule()
    rule.CopyFrom(stored)
    new = request.alert_rule
    for path in paths:
        if path in ("condition", *CONDITIONS):
            which = new.WhichOneof("condition")
            if which is None:
                raise InvalidArgument(
                    "update_mask names the condition but the rule has none",
                    [FieldViolation("alert_rule.condition", "set one condition")],
                )
            getattr(rule, which).CopyFrom(getattr(new, which))
        elif path in ("devices",):
            rule.devices.CopyFrom(new.devices)
        elif path == "sensors":
            del rule.sensors[:]
            rule.sensors.extend(new.sensors)
        else:
            setattr(rule, path, getattr(new, path))
    restarts = any(p in RESTARTING for p in paths) and (
        rule.devices != stored.devices
        or list(rule.sensors) != list(stored.sensors)
        or rule.WhichOneof("condition") != stored.WhichOneof("condition")
        or getattr(rule, rule.WhichOneof("condition") or "")
        != getattr(stored, stored.WhichOneof("condition") or "")
    )
    return rule, restarts


def _set_fields(rule: alert_pb2.AlertRule) -> list[str]:
    """Without a mask, every updatable field the request sets (as UpdateDevice does)."""
    present = [field.name for field, _ in rule.ListFields() if field.name in UPDATABLE[:6]]
    return present + (["condition"] if rule.WhichOneof("condition") else [])
