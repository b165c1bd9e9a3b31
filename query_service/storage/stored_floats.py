"""Values stored as `real` served as the decimal they were sent as.

The typed payloads' quantities are `float` in the contract and `real` in storage: 32 bits.
Responses carry `double`, and the exact widening of the 32-bit value a client sent as 0.1 is
0.10000000149011612, which is what every reader then printed. What users see instead is the
shortest decimal that reads back as the stored 32-bit value (0.1), as a double: the same digits
the live feed's JSON shows for the `float` fields themselves, and what the client sent whenever
it sent at most float32's 6 to 9 significant digits (except where that decimal lies exactly
halfway between two 32-bit values, as 768557600 does: PostgreSQL then prints one digit more,
768557570, which reads back as the same value). A mean of such values is off the mean of
the decimals sent by at most the largest magnitude times 2**-24 (each value's rounding to 32
bits), so it is rounded to the fewest decimal places that stay within that distance: the mean
of 21.1, 0.1, 21.1 and 0.3 is 10.65, not 10.650000184774399. Measurements (`double`) and
byte counts (`bigint`) are served as stored.

PostgreSQL does the raw values and the extremes (`real::text` is the shortest round-trip form
since PostgreSQL 12); Python the means, one per bucket.
"""

from __future__ import annotations

import math

from sensormesh_core.storage.schema import SqlType


def value_sql(expression: str, sql_type: SqlType) -> str:
    """SQL giving `expression` (a value of a column of `sql_type`) as the double to serve."""
    return f"{expression}::text::float8" if sql_type is SqlType.REAL else f"{expression}::float8"


# Round-to-nearest moves a value by at most this fraction of its magnitude on its way to 32 bits.
_SINGLE_ROUNDING = 2.0**-24

# Powers of ten that are exact doubles, so that m / 10**p is the double nearest the decimal.
_EXACT_POWERS = 22


def mean_as_sent(mean: float, lo: float, hi: float) -> float:
    """`mean` (of values in [lo, hi]) to the decimal places that 32-bit storage leaves meaningful.

    The fewest places whose rounding stays within the values' storage error. One multiply,
    round and divide per bucket: a search over the number of digits cost 10 us a bucket, 15 ms
    of a day read at one-minute buckets (1,440).
    """
    tolerance = max(abs(lo), abs(hi)) * _SINGLE_ROUNDING
    if not (tolerance > 0 and math.isfinite(tolerance) and math.isfinite(mean)):
        return mean
    places = math.ceil(math.log10(0.5 / tolerance))
    if abs(places) > _EXACT_POWERS:
        return mean
    if places >= 0:
        scale = 10.0**places
        served = round(mean * scale) / scale
    else:
        scale = 10.0**-places
        served = float(round(mean / scale) * scale)
    return served if abs(served - mean) <= tolerance else mean
