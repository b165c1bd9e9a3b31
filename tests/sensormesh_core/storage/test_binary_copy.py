"""The alert evaluator's read-back: binary COPY from the real PostgreSQL read by numpy, and
refused rather than misread when a row is not of the shape expected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from sensormesh_core.storage.alert_inputs import SensorNames, Window, _copy, _epoch_seconds, _row_type, values
from sensormesh_core.storage.registry import create_device
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = pytest.mark.storage

QUERY = (
    "SELECT s::int4, 100 + s::int8, timestamptz '2026-12-06 01:02:03.456789+00' + s * interval '1 ms', "
    "s * 0.5::float8, -s::float8 FROM generate_series(1, {n}) s"
)


async def test_rows_come_back_whole_with_times_in_epoch_seconds(db: asyncpg.Connection) -> None:
    rows = await _copy(db, QUERY.format(n=3), _row_type(2))
    assert rows["sequence"].tolist() == [101, 102, 103]
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
    query = "SELECT 1, 1::int8, now(), NULL::float8, 2::float8 UNION ALL SELECT 1, 2::int8, now(), 1::float8, NULL"
    with pytest.raises(ValueError, match="binary COPY"):
        await _copy(db, query, _row_type(2))


async def test_a_field_of_another_width_is_refused(db: asyncpg.Connection) -> None:
    query = "SELECT 1, 1::int8, now(), 1::float4, 2::float4, 3::float4, 4::float4"  # as wide, other fields
    with pytest.raises(ValueError, match="binary COPY"):
        await _copy(db, query, _row_type(2))


def test_the_row_type_is_packed_big_endian() -> None:
    row = _row_type(1)
    assert row.itemsize == 2 + (4 + 4) + (4 + 8) * 3
    assert row["time"] == np.dtype(">i8")


async def test_values_split_windows_by_device_and_sensor_in_sequence_order_without_absent_fields(
    db: asyncpg.Connection,
) -> None:
    """What the evaluator reads for a round: each device's window, per quantity and sensor, in
    sequence order; a reading without an optional field is not a value of it."""
    writer = ReadingWriter(db)
    start = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    for device_id in ("pi-a", "pi-b"):
        await create_device(db, device_id)
        readings = []
        for n in range(6):
            sensor = "bme-1" if n % 2 else "bme-2"
            humidity = float(n) if n != 3 else None  # reading 3 (bme-1) carries no humidity
            reading = environment(sensor, start + timedelta(seconds=10 - n), 20.0 + n, humidity)
            readings.append(reading)  # sample times run backwards: sequence order is not time order
        await writer.write(device_id, readings, notify=False)
    windows = [Window(d, 0, 6, start, start + timedelta(minutes=1)) for d in ("pi-a", "pi-b")]
    found = await values(db, windows, ["temperature", "relative_humidity"], [], SensorNames())
    assert set(found) == {"pi-a", "pi-b"}
    for device_id in ("pi-a", "pi-b"):
        series = {(s.sensor, q): s for q, all_series in found[device_id].items() for s in all_series}
        assert series[("bme-2", "temperature")].values.tolist() == [20.0, 22.0, 24.0]
        assert series[("bme-1", "temperature")].values.tolist() == [21.0, 23.0, 25.0]
        assert series[("bme-1", "relative_humidity")].values.tolist() == [1.0, 5.0]
        assert series[("bme-2", "temperature")].times.tolist() == [
            (start + timedelta(seconds=10 - n)).timestamp() for n in (0, 2, 4)
        ]
    only = await values(db, windows[:1], ["temperature"], ["bme-1"], SensorNames())
    assert [s.sensor for s in only["pi-a"]["temperature"]] == ["bme-1"]
