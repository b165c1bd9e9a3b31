"""Sizes in configuration files: "512MiB", "1.5GB", "2G", or a number of bytes.

`ByteSize` is an int: the agent's options (gateway_agent/options.py) parse a
field typed `ByteSize` (or a subclass with a bound) with `ByteSize.parse`. The
units are pydantic's, so agent.toml files written when the agent's options
were pydantic models read the same.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18}
_BYTE_UNITS: dict[str, float] = {
    "": 1,
    "b": 1,
    **{f"{p}b": size for p, size in _DECIMAL.items()},
    **{f"{p}ib": 2 ** (10 * (i + 1)) for i, p in enumerate(_DECIMAL)},
    "bit": 1 / 8,
    **{f"{p}bit": size / 8 for p, size in _DECIMAL.items()},
    **{f"{p}ibit": 2 ** (10 * (i + 1)) / 8 for i, p in enumerate(_DECIMAL)},
    **_DECIMAL,
}
"""pydantic's units (so agent.toml files written for it read the same): kB is 1000, KiB 1024, a
single letter decimal (`1G` is 10^9), `bit` an eighth; any case."""
_BYTES = re.compile(r"^\s*(\d*\.?\d+)\s*([a-z]*)\s*$", re.I)
_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


class ByteSize(int):
    """A number of bytes that also parses "512MiB", "1.5GB", "2G" or "4096". A subclass sets
    `more_than` to bound the option (msgspec's bounds are for its own number types)."""

    more_than: ClassVar[int] = -1

    @classmethod
    def parse(cls, value: Any) -> Self:
        """`value` as bytes: a whole number, or a number with a unit; ValueError says what is
        expected, or that the size is too small."""
        size = _bytes(value)
        if size is None:
            raise ValueError(f"expected a size such as 512MiB, 2GB or a number of bytes, got {value!r}")
        if size <= cls.more_than:
            bound = (
                "not be negative" if cls.more_than < 0 else f"be more than {ByteSize(cls.more_than).human()}"
            )
            raise ValueError(f"must {bound}, got {value!r}")
        return cls(size)

    def human(self) -> str:
        """The size in the largest binary unit that divides it: "512MiB"; else in bytes."""
        for unit, size in _BINARY:
            if self and self % size == 0:
                return f"{self // size}{unit}"
        return f"{int(self)}B"


def _bytes(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    match = _BYTES.match(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _BYTE_UNITS:
        return None
    try:
        return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])
    except OverflowError:
        return None
