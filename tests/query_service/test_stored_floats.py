"""Values stored as `real` come back as the decimal that was sent (stored_floats.py)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_service.storage.stored_floats import as_sent, mean_as_sent, value_sql
from sensormesh_core.storage.schema import SqlType


def widened(value: float) -> float:
    """What a `float` field or a `real` column holds for `value`, read as a double."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


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
