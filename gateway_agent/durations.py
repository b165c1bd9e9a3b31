"""Durations in configuration files: "10ms", "1s", "5m", "1h", plain seconds, or ISO 8601.

Telegraf-style suffixes are what people write in an agent's TOML; ISO 8601
("PT1S") and a number of seconds are accepted too. `Duration` is a timedelta:
the agent's options (gateway_agent/options.py) parse a field typed `Duration`
with `Duration.parse`, so an option's type says which spellings it takes.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import msgspec

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SUFFIXED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_CLOCK = re.compile(r"^\s*(?:(\d+)\s*days?,?\s*)?(?:(\d+):(\d{2}):(\d{2}(?:\.\d+)?))?\s*$")
"""Python's own spelling, which pydantic read too: "1 day, 02:00:00", "00:00:10", "2 days"."""


class Duration(timedelta):
    """A timedelta that also parses "100ms", "10s", "5m", "1h" and "1d"."""

    @classmethod
    def parse(cls, value: Any) -> Duration:
        """`value` as a Duration: a timedelta, a number of seconds, a suffixed or an ISO 8601
        string; ValueError says what is expected."""
        seconds = _seconds(value)
        try:
            if seconds is not None and seconds >= 0:  # NaN is not
                return cls(seconds=seconds)
        except OverflowError:  # infinite, or more than timedelta holds
            pass
        raise ValueError(
            f"expected a duration such as 10ms, 1s, 5m, 1h, 1d, seconds or PT1S"
            f" (not negative, at most 999999999 days), got {value!r}"
        )

    def spelled(self) -> str:
        """As agent.toml would write it: the largest unit that divides it ("1m", "500ms")."""
        ms = round(self.total_seconds() * 1000)
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if ms and ms % size == 0:
                return f"{ms // size}{unit}"
        return f"{ms}ms"


def _seconds(value: Any) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    if match := _SUFFIXED.match(value):
        return float(match.group(1)) * _UNITS[match.group(2)]
    if (match := _CLOCK.match(value)) and any(match.groups()):
        days, hours, minutes, seconds = (float(part or 0) for part in match.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    try:
        return msgspec.convert(value.strip(), timedelta).total_seconds()
    except msgspec.ValidationError:
        return None
