"""Checks beyond the proto's `buf.validate` rules, with field violations.

protovalidate enforces what the contract declares (lengths, ranges, end after
start); what depends on the service's settings or on the meaning of a name
(a sensor filter that no sensor could ever match, an interval below one
second, a replay too far back) is checked here, all violations at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sensormesh_core import validation
from sensormesh_core.errors import FieldViolation, InvalidArgument

# The names a Reading may carry (reading.proto): a filter outside these matches nothing ever.
SENSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
QUANTITY_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


def filter_violations(sensors: Sequence[str], quantities: Sequence[str]) -> list[FieldViolation]:
    found = [
        FieldViolation(
            f"sensors[{i}]", "not a sensor name: letters, digits and ._:@/- starting with a letter or digit"
        )
        for i, name in enumerate(sensors)
        if not SENSOR_NAME.match(name)
    ]
    found += [
        FieldViolation(
            f"quantities[{i}]",
            "not a quantity name: lower-case letters, digits and _.- starting with a letter",
        )
        for i, name in enumerate(quantities)
        if not QUANTITY_NAME.match(name)
    ]
    return found


def raise_if(request: Message, found: list[FieldViolation]) -> None:
    if found:
        fields = ", ".join(v.field for v in found)
        raise InvalidArgument(f"invalid {request.DESCRIPTOR.name}: {fields}", found)


def validate_with(request: Message, extra: Callable[[], list[FieldViolation]]) -> None:
    """The proto's rules and the `extra` checks, reported together. `extra` runs only
    once the request's times and durations are well-formed (it converts them)."""
    raise_if(request, validation.form_violations(request))
    raise_if(request, validation.violations(request) + extra())


def to_datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def time_range(
    start: Timestamp | None, end: Timestamp | None, default_span: timedelta, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) with the defaults: end = now, start = end - default_span (never before year 1)."""
    end_time = to_datetime(end) if end is not None else now
    if start is not None:
        return to_datetime(start), end_time
    earliest = datetime.min.replace(tzinfo=UTC)
    return (end_time - default_span if end_time - earliest > default_span else earliest), end_time


def interval_violations(interval: Duration | None) -> list[FieldViolation]:
    """What query.proto cannot say of an interval (its rules bound it to zero or 1 s to 31 days)."""
    if interval is None:
        return []
    if interval.nanos % 1000:
        return [FieldViolation("interval", "must be a whole number of microseconds")]
    return []


def replay_violations(start: Timestamp | None, max_age: timedelta, now: datetime) -> list[FieldViolation]:
    if start is None or to_datetime(start) >= now - max_age:
        return []
    minutes = int(max_age.total_seconds() // 60)
    return [FieldViolation("start_time", f"may reach at most {minutes} minutes back")]
