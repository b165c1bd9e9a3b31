"""Durations as people type them on the command line: `90d`, `12h`, `30m`, `45s`, `2w`, or ISO 8601."""

from __future__ import annotations

import re
from datetime import timedelta

_SHORT_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, flag: str = "duration") -> timedelta:
    """`90d`, `12h`, `30m`, `45s`, `0.5s`, `2w`, or an ISO 8601 duration (`P90D`, `PT12H`);
    ValueError names `flag` otherwise."""
    from pydantic import TypeAdapter, ValidationError

    short = _SHORT_DURATION.match(text.strip())
    if short:
        return timedelta(**{_UNITS[short.group(2)]: float(short.group(1))})
    try:
        return TypeAdapter(timedelta).validate_python(text.strip())
    except ValidationError:
        raise ValueError(f"{flag} {text!r}: expected e.g. 90d, 12h, 30m, 10s or P90D") from None
