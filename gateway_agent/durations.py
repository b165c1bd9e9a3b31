"""Durations in configuration files: "10ms", "1s", "5m", "1h", plain seconds, or ISO 8601.

Telegraf-style suffixes are what people write in an agent's TOML; pydantic
alone understands only seconds and ISO 8601 ("PT1S"), which it still accepts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SUFFIXED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def _parse(value: Any) -> Any:
    if isinstance(value, str):
        match = _SUFFIXED.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse)]
"""A timedelta that also parses "100ms", "10s", "5m", "1h" and "1d"."""
