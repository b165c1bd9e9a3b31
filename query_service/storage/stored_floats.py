"""Values stored as `real` served as the decimal they were sent as.

The typed payloads' quantities are `float` in the contract and `real` in storage: 32 bits.
Responses carry `double`, and the exact widening of the 32-bit value a client sent as 0.1 is
0.10000000149011612, which is what every reader then printed. What users see instead is the
shortest decimal that reads back as the stored 32-bit value (0.1), as a double: the same digits
the live feed's JSON shows for the `float` fields themselves, and what the client sent whenever
it sent at most float32's 6 to 9 significant digits. A mean of such values is off the mean of
the decimals sent by at most the largest magnitude times 2**-24 (each value's rounding to 32
bits), so it is served as the shortest decimal within that distance: the mean of 21.1, 0.1,
21.1 and 0.3 is 10.65, not 10.650000184774399. Measurements (`double`) and byte counts
(`bigint`) are served as stored.

PostgreSQL does the raw values and the extremes (`real::text` is the shortest round-trip form
since PostgreSQL 12); Python the means, one per bucket.
"""

from __future__ import annotations

import math
import struct

from sensormesh_core.storage.schema import SqlType

_SINGLE = struct.Struct("<f")


def value_sql(expression: str, sql_type: SqlType) -> str:
    """SQL giving `expression` (a value of a column of `sql_type`) as the double to serve."""
    return f"{expression}::text::float8" if sql_type is SqlType.REAL else f"{expression}::float8"


def as_sent(value: float) -> float:
    """The shortest decimal of `value` rounded to 32 bits, as a double (0.10000000149011612 -> 0.1)."""
    single = _to_single(value)
    if single is None or not math.isfinite(single):
        return value
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        shortest = float(f"{single:.{digits}g}")
        if _to_single(shortest) == single:
            return shortest
    return single


def _to_single(value: float) -> float | None:
    """`value` rounded to 32 bits, or None beyond float32's range (3.4e38 rounds up past it)."""
    try:
        single: float = _SINGLE.unpack(_SINGLE.pack(value))[0]
    except OverflowError:
        return None
    return single


# Round-to-nearest moves a value by at most this fraction of its magnitude on its way to 32 bits.
_SINGLE_ROUNDING = 2.0**-24


def mean_as_sent(mean: float, lo: float, hi: float) -> float:
    """The shortest decimal as close to `mean` (of values in [lo, hi]) as 32-bit storage allows."""
    tolerance = max(abs(lo), abs(hi)) * _SINGLE_ROUNDING
    for digits in range(1, 17):
        shorter = float(f"{mean:.{digits}g}")
        if abs(shorter - mean) <= tolerance:
            return shorter
    return mean
