"""Alert rules as the evaluator uses them: which devices and sensors, which quantity, which
condition, built once from the contract's AlertRule each time the rules change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import asyncpg
from sensormesh.v1 import alert_pb2

from control_service.alerting.conditions import Anomaly, Condition, RateOfChange, Threshold
from sensormesh_core.errors import FieldViolation, InvalidArgument
from sensormesh_core.storage import alert_inputs
from sensormesh_core.storage.alerts import Notice


class Kind(StrEnum):
    """How a rule is judged: on a quantity's readings, on silence, or on the agent's reports."""

    SERIES = "series"
    NO_DATA = "no_data"
    INPUT_FAILING = "input_failing"
    THINNING = "thinning"


@dataclass(frozen=True)
class CompiledRule:
    """One enabled rule, ready to judge readings."""

    rule_id: str
    severity: int
    kind: Kind
    device_ids: frozenset[str]
    labels: Mapping[str, str]
    sensors: frozenset[str]
    notice: Notice
    quantity: str = ""
    condition: Condition | None = None
    silence: float = 0.0

    def selects(self, device_id: str, labels: Mapping[str, str]) -> bool:
        if self.device_ids:
            return device_id in self.device_ids
        return all(labels.get(k) == v for k, v in self.labels.items())

    def watches(self, sensor: str) -> bool:
        return not self.sensors or sensor in self.sensors


def compile_rule(rule: alert_pb2.AlertRule) -> CompiledRule:
    """The evaluator's form of a stored (already validated) rule."""
    base = CompiledRule(
        rule_id=rule.rule_id,
        severity=int(rule.severity),
        kind=Kind.SERIES,
        device_ids=frozenset(rule.devices.device_ids),
        labels=dict(rule.devices.labels),
        sensors=frozenset(rule.sensors),
        notice=Notice(rule.display_name or rule.rule_id, rule.description),
    )
    which = rule.WhichOneof("condition")
    if which == "no_data":
        return replace(base, kind=Kind.NO_DATA, silence=rule.no_data.silence.ToTimedelta().total_seconds())
    if which == "agent":
        failing = rule.agent.kind == alert_pb2.AGENT_CONDITION_KIND_INPUT_FAILING
        return replace(base, kind=Kind.INPUT_FAILING if failing else Kind.THINNING)
    quantity, condition = _series_condition(rule)
    return replace(base, quantity=quantity, condition=condition)


def _series_condition(rule: alert_pb2.AlertRule) -> tuple[str, Condition]:
    which = rule.WhichOneof("condition")
    if which == "threshold":
        t = rule.threshold
        limit = t.WhichOneof("limit")
        low = t.below if limit == "below" else t.outside.low if limit == "outside" else None
        high = t.above if limit == "above" else t.outside.high if limit == "outside" else None
        describe = {
            "above": f"above {t.above:g}",
            "below": f"below {t.below:g}",
            "outside": f"outside {t.outside.low:g}..{t.outside.high:g}",
        }[limit or "above"]
        condition: Condition = Threshold(
            low=low,
            high=high,
            hysteresis=t.hysteresis,
            hold=t.for_duration.ToTimedelta().total_seconds(),
            clear_hold=t.clear_for.ToTimedelta().total_seconds(),
            describe=describe,
        )
        return t.quantity, condition
    if which == "rate_of_change":
        r = rule.rate_of_change
        return r.quantity, RateOfChange(
            r.window.ToTimedelta().total_seconds(), r.max_change, int(r.direction)
        )
    a = rule.anomaly
    return a.quantity, Anomaly(span=a.span, deviations=a.deviations, min_samples=a.min_samples or a.span)


def quantity_of(rule: alert_pb2.AlertRule) -> tuple[str, str] | None:
    """(field path, quantity) of a rule on a quantity; None for no-data and agent rules."""
    which = rule.WhichOneof("condition")
    if which in ("threshold", "rate_of_change", "anomaly"):
        return f"alert_rule.{which}.quantity", getattr(rule, which).quantity
    return None


async def check_rule(conn: asyncpg.Connection, rule: alert_pb2.AlertRule) -> None:
    """What the contract's rules cannot say: the quantity is one a rule can read (a typed
    quantity, or a measurement some device has reported: a typo is refused, not silent)."""
    found = quantity_of(rule)
    if found is None:
        return
    path, quantity = found
    if alert_inputs.is_typed(quantity) or await alert_inputs.known_measurement(conn, quantity):
        return
    raise InvalidArgument(
        f"no reading has the quantity {quantity!r}",
        [
            FieldViolation(
                path,
                "not a typed quantity (temperature, acceleration_z, ...) nor a measurement any device has reported",
            )
        ],
    )
