"""The alert evaluator's read-back: binary COPY from the real PostgreSQL read by numpy, and
refused rather than misread when a row is not of the shape expected."""

from __future__ import annotations

import asyncpg
import numpy as np
import pytest

from sensormesh_core.storage.alert_inputs import _copy, _epoch_seconds, _row_type

pytestmark = pytest.mark.storage

QUERY = (
    "SELECT 7::int4, s::int4, 100 + s::int8, timestamptz '2026-12-06 01:02:03.456789+00' + s * interval '1 ms', "
    "s * 0.5::float8, -s::float8 FROM generate_series(1, {n}) s"
)


async def test_rows_come_back_whole_with_times_in_epoch_seconds(db: asyncpg.Connection) -> None:
    rows = await _copy(db, QUERY.format(n=3), _row_type(2))
    assert rows["window"].tolist() == [7, 7, 7] and rows["sequence"].tolist() == [101, 102, 103]
    assert rows["sensor_id"].tolist() == [1, 2, 3]
    assert rows["v0"].tolist() == [0.5, 1.0, 1.5]
    assert rows["v1"].tolist() == [-1.0, -2.0, -3.0]
    expected = await db.fetch(
        "SELECT extract(epoch FROM timestamptz '2026-12-06 01:02:03.456789+00' + s * interval '1 ms')::float8 "
        "FROM generate_series(1, 3) s"
    )
    assert _epoch_seconds(rows["time"]).tolist() == [r[0] for r in expected]  # to the last bit


async def test_no_rows_are_an_empty_array(db: asyncpg.Connection) -> None:
    rows = await _copy(db, QUERY.format(n=0), _row_type(2))
    assert len(rows) == 0 and rows.dtype == _row_type(2)


async def test_a_null_is_refused_not_misread(db: asyncpg.Connection) -> None:
    query = "SELECT 0, 1, 1::int8, now(), NULL::float8, 2::float8 UNION ALL SELECT 0, 1, 2::int8, now(), 1::float8, NULL"
    with pytest.raises(ValueError, match="binary COPY"):
        await _copy(db, query, _row_type(2))


async def test_a_field_of_another_width_is_refused(db: asyncpg.Connection) -> None:
    query = "SELECT 0, 1, 1::int8, now(), 1::float4, 2::float4, 3::float4, 4::float4"  # as wide, other fields
    with pytest.raises(ValueError, match="binary COPY"):
        await _copy(db, query, _row_type(2))


def test_the_row_type_is_packed_big_endian() -> None:
    row = _row_type(1)
    assert row.itemsize == 2 + (4 + 4) * 2 + (4 + 8) * 3
    assert row["time"] == np.dtype(">i8")
