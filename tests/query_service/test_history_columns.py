"""ListReadings in READINGS_VIEW_COLUMNS: the same pages as the rows, value for value."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from sensormesh.v1 import query_pb2, query_pb2_grpc

from tests.query_service.rpc_errors import field_violations
from tests.query_service.test_history import START, request, stamp
from tests.support.reading_writer import ReadingWriter, environment, imu, measurement

pytestmark = pytest.mark.storage

COLUMNS = query_pb2.READINGS_VIEW_COLUMNS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


async def _write_several(writer: ReadingWriter, device: str) -> None:
    """Three tables, four series, values that need their decimals, sub-millisecond times."""
    await writer.write(
        device,
        [environment("bme280", START + timedelta(seconds=i), 20.1 + (i % 7) / 10) for i in range(150)],
    )
    await writer.write(device, [imu("mpu", START + timedelta(seconds=i), ax=i / 3) for i in range(40)])
    await writer.write(
        device,
        [
            measurement(
                "soil", START + timedelta(seconds=7 * i, microseconds=123_457), "soil_moisture", i / 7, "%"
            )
            for i in range(20)
        ],
    )


def _row_points(page: query_pb2.ListReadingsResponse) -> list[tuple[str, str, str, int, float]]:
    return [
        (s.sensor, s.quantity, s.unit, _micros(p.time.ToDatetime(tzinfo=UTC)), p.value)
        for s in page.series
        for p in s.points
    ]


def _column_points(page: query_pb2.ListReadingsResponse) -> list[tuple[str, str, str, int, float]]:
    assert not page.series
    for c in page.columns:
        assert len(c.time_micros) == len(c.values) and not (c.mins or c.maxes or c.means or c.counts)
    return [
        (c.sensor, c.quantity, c.unit, t, v)
        for c in page.columns
        for t, v in zip(c.time_micros, c.values, strict=True)
    ]


def _row_buckets(
    page: query_pb2.ListReadingsResponse,
) -> list[tuple[str, str, int, float, float, float, int]]:
    return [
        (s.sensor, s.quantity, _micros(b.start_time.ToDatetime(tzinfo=UTC)), b.min, b.max, b.mean, b.count)
        for s in page.series
        for b in s.buckets
    ]


def _column_buckets(
    page: query_pb2.ListReadingsResponse,
) -> list[tuple[str, str, int, float, float, float, int]]:
    assert not page.series
    found = []
    for c in page.columns:
        assert not c.values
        for t, lo, hi, mean, count in zip(c.time_micros, c.mins, c.maxes, c.means, c.counts, strict=True):
            assert count == int(count)
            found.append((c.sensor, c.quantity, t, lo, hi, mean, int(count)))
    return found


async def test_raw_columns_equal_the_rows_value_for_value(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_several(writer, device)
    rows = await queries.ListReadings(request(device, page_size=100_000))
    columns = await queries.ListReadings(request(device, page_size=100_000, view=COLUMNS))
    expected = _row_points(rows)
    assert len({(s, q) for s, q, *_ in expected}) >= 4 and len(expected) == 150 + 40 * 6 + 20
    assert _column_points(columns) == expected
    assert all(math.isfinite(value) for *_, value in _column_points(columns))
    # Microseconds survive: the soil series was written 123,457 us past each second.
    soil = next(c for c in columns.columns if c.quantity == "soil_moisture")
    assert soil.time_micros[0] == _micros(START + timedelta(microseconds=123_457))
    # Explicit rows are the default layout.
    assert (
        await queries.ListReadings(request(device, page_size=100_000, view=query_pb2.READINGS_VIEW_ROWS))
        == rows
    )
    assert not rows.columns


async def test_raw_column_pages_walk_the_same_points_as_row_pages(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_several(writer, device)
    expected = _row_points(await queries.ListReadings(request(device, page_size=100_000)))
    got: list[tuple[str, str, str, int, float]] = []
    token, pages = "", 0
    while True:
        # A walk may switch layouts: tokens are not bound to the view.
        view = COLUMNS if pages % 3 else query_pb2.READINGS_VIEW_ROWS
        page = await queries.ListReadings(request(device, page_size=37, page_token=token, view=view))
        got += _column_points(page) if view == COLUMNS else _row_points(page)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert got == expected
    assert pages == -(-len(expected) // 37)


@pytest.mark.parametrize("seconds", [10, 60])
async def test_bucket_columns_equal_the_rows_value_for_value(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str, seconds: int
) -> None:
    await _write_several(writer, device)
    interval = Duration(seconds=seconds)
    rows = await queries.ListReadings(request(device, interval=interval))
    columns = await queries.ListReadings(request(device, interval=interval, view=COLUMNS))
    expected = _row_buckets(rows)
    assert len({(s, q) for s, q, *_ in expected}) >= 4
    assert _column_buckets(columns) == expected
    assert all(math.isfinite(x) for b in _column_buckets(columns) for x in b[3:])
    assert [(c.sensor, c.quantity, c.unit) for c in columns.columns] == [
        (s.sensor, s.quantity, s.unit) for s in rows.series
    ]

    paged: list[tuple[str, str, int, float, float, float, int]] = []
    token = ""
    while True:
        page = await queries.ListReadings(
            request(device, interval=interval, page_size=4, page_token=token, view=COLUMNS)
        )
        assert sum(len(c.time_micros) for c in page.columns) <= 4
        paged += _column_buckets(page)
        token = page.next_page_token
        if not token:
            break
    assert paged == expected


async def test_an_empty_range_has_no_columns(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_several(writer, device)
    later = {
        "start_time": stamp(START + timedelta(minutes=30)),
        "end_time": stamp(START + timedelta(minutes=40)),
    }
    for interval in (None, Duration(seconds=60)):
        extra = {"interval": interval} if interval is not None else {}
        got = await queries.ListReadings(request(device, view=COLUMNS, **later, **extra))
        assert got == query_pb2.ListReadingsResponse()


async def test_a_view_the_contract_does_not_have_is_invalid_argument_naming_view(
    queries: query_pb2_grpc.QueryServiceStub, device: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await queries.ListReadings(request(device, view=7))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "view" in field_violations(caught.value), field_violations(caught.value)
