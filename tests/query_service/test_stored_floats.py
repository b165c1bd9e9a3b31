"""Values stored as `real` come back as the decimal that was sent (stored_floats.py).

`as_sent` is the oracle: the shortest decimal that rounds to the same 32-bit value, by search.
PostgreSQL's `real::text`, which the served values go through, must agree with it."""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_service.storage.stored_floats import mean_as_sent, value_sql
from sensormesh_core.storage.schema import SqlType


def widened(value: float) -> float:
    """What a `float` field or a `real` column holds for `value`, read as a double."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def as_sent(value: float) -> float:
    """The shortest decimal that `value` rounded to 32 bits reads back as (0.10000000149011612 -> 0.1)."""
    if not math.isfinite(value):
        return value
    single = widened(value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        shortest = float(f"{single:.{digits}g}")
        try:
            if widened(shortest) == single:
                return shortest
        except OverflowError:  # 3.4e38 rounds up past float32's largest value
            continue
    return single


@pytest.mark.parametrize("sent", [0.1, 21.1, 9.80665, -40.0, 1013.25, 3.4e38, 1.1754944e-38, 0.0])
def test_a_value_sent_as_a_short_decimal_is_served_as_that_decimal(sent: float) -> None:
    assert widened(sent) != sent or sent in (-40.0, 1013.25, 0.0)
    assert as_sent(widened(sent)) == sent


def test_values_that_need_all_nine_digits_keep_them() -> None:
    # 16777217 is not a float32; its neighbours need 8 and 9 significant digits.
    assert as_sent(widened(16777217.0)) == 16777216.0
    assert as_sent(widened(0.123456789)) == 0.12345679


def test_infinities_nans_and_signed_zero_pass_through() -> None:
    assert as_sent(math.inf) == math.inf and as_sent(-math.inf) == -math.inf
    assert math.isnan(as_sent(math.nan))
    assert math.copysign(1.0, as_sent(-0.0)) == -1.0


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_the_served_decimal_reads_back_as_the_stored_value(stored: float) -> None:
    served = as_sent(stored)
    assert widened(served) == stored
    assert float(f"{served:.9g}") == served  # at most float32's nine significant digits


async def test_postgresql_serves_real_values_as_the_oracle_does(postgres_admin_url: str) -> None:
    """What history and latest values serve: each `real` through `value_sql`, in PostgreSQL."""
    rng = random.Random(20261204)
    edges = [0.1, 21.1, -0.0, 3.4025001647762064e38, 3.4028234663852886e38, 1.1754943508222875e-38, 1e-45]
    drawn = [struct.unpack("<f", rng.getrandbits(32).to_bytes(4, "little"))[0] for _ in range(20_000)]
    stored = [widened(v) for v in edges] + [v for v in drawn if math.isfinite(v)]
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        served = await conn.fetch(
            f"SELECT {value_sql('v', SqlType.REAL)} AS served FROM unnest($1::real[]) WITH ORDINALITY AS t(v, i) ORDER BY i",
            stored,
        )
    finally:
        await conn.close()
    assert all(widened(r["served"]) == s for s, r in zip(stored, served, strict=True))
    differ = [(s, r["served"]) for s, r in zip(stored, served, strict=True) if r["served"] != as_sent(s)]
    # PostgreSQL (Ryu) takes one more digit when the shortest decimal lies exactly halfway between
    # two float32s (768557600 is; it reads back as 768557568 by round-half-even): nowhere else.
    assert differ and all(_halfway(as_sent(s), s) for s, _ in differ)
    assert len(differ) < len(stored) / 100


def _halfway(decimal: float, single: float) -> bool:
    """Whether `decimal` is exactly the midpoint between `single` and a neighbouring float32."""
    bits = struct.unpack("<I", struct.pack("<f", single))[0]
    neighbours = (struct.unpack("<f", struct.pack("<I", b))[0] for b in (bits - 1, bits + 1))
    return any(Fraction(repr(decimal)) == (Fraction(single) + Fraction(n)) / 2 for n in neighbours)


def test_a_mean_is_the_mean_of_what_was_sent() -> None:
    sent = [21.1, 0.1, 21.1, 0.3]
    stored = [widened(v) for v in sent]
    assert sum(stored) / 4 != 10.65
    assert mean_as_sent(sum(stored) / 4, min(stored), max(stored)) == 10.65
    assert mean_as_sent(9.80665, 9.80665, 9.80665) == 9.80665
    assert mean_as_sent(1 / 3, 0.0, 1.0) == 0.3333333  # no more digits than the values carry


@given(
    st.lists(
        st.floats(
            width=32, allow_nan=False, allow_subnormal=False, min_value=-(2.0**100), max_value=2.0**100
        ),
        min_size=1,
        max_size=50,
    )
)
def test_a_served_mean_stays_within_the_values_precision(stored: list[float]) -> None:
    mean = sum(stored) / len(stored)
    bound = max(abs(v) for v in stored) * 2.0**-24
    served = mean_as_sent(mean, min(stored), max(stored))
    assert abs(served - mean) <= bound
    sent_mean = sum(as_sent(v) for v in stored) / len(stored)
    assert abs(served - sent_mean) <= 2 * bound + abs(mean) * 1e-15


def test_only_real_columns_go_through_text() -> None:
    assert value_sql("v", SqlType.REAL) == "v::text::float8"
    assert value_sql("v", SqlType.DOUBLE) == "v::float8"
