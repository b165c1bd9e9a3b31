"""ListReadings: a device's history, page by page across its series.

A page walks the device's series in (sensor, quantity) order and fills up to
`page_size` points or buckets. The page token records where the next page
resumes: the series by its name (not its position, so a sensor appearing
between calls cannot shift the walk), the (time, sequence) of the last point
or the start of the next bucket, and the time range the first page resolved
(so a defaulted end time of "now" stays the same on every page). Readings
committed later inside the range and after the cursor show up on later pages;
nothing already returned is returned again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sensormesh.v1 import query_pb2

from query_service.request_checks import (
    filter_violations,
    interval_violations,
    time_range,
    validate_with,
)
from query_service.storage import history
from query_service.storage.series import SeriesRef, device_series
from sensormesh_core import page_tokens
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.maintenance import Backend
from sensormesh_core.storage.registry import device_exists

_PAGE_KIND = "readings"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


_MICROS_RANGE = (_micros(datetime.min.replace(tzinfo=UTC)), _micros(datetime.max.replace(tzinfo=UTC)))


def _is_micros(value: Any) -> bool:
    return type(value) is int and _MICROS_RANGE[0] <= value <= _MICROS_RANGE[1]


def _checked_cursor(cursor: dict[str, Any]) -> dict[str, Any]:
    """The cursor of a readings token, if it has the shape `list_readings` issues:
    `s`, `e` (the range), optionally `q` (the series: [sensor, quantity]) with `a`
    (the last [time, sequence]) or `b` (the next bucket's start)."""
    series = cursor.get("q", ["", ""])
    after = cursor.get("a", [0, 0])
    shaped = (
        _is_micros(cursor.get("s"))
        and _is_micros(cursor.get("e"))
        and isinstance(series, list)
        and len(series) == 2
        and all(isinstance(name, str) for name in series)
        and isinstance(after, list)
        and len(after) == 2
        and _is_micros(after[0])
        and type(after[1]) is int
        and 0 <= after[1] < 1 << 63  # a sequence (bigint)
        and _is_micros(cursor.get("b", 0))
    )
    if not shaped or cursor["s"] >= cursor["e"]:
        raise page_tokens.invalid()
    return cursor


@dataclass
class _Page:
    """The page being filled and where the next one resumes."""

    response: query_pb2.ListReadingsResponse
    remaining: int
    columns: bool = False  # READINGS_VIEW_COLUMNS: `response.columns` instead of `response.series`
    cursor: dict[str, Any] | None = None


def _token_parameters(request: query_pb2.ListReadingsRequest) -> dict[str, Any]:
    """What a page token is bound to: everything but page_size and page_token."""
    return {
        "device_id": request.device_id,
        "start": request.start_time.ToJsonString() if request.HasField("start_time") else None,
        "end": request.end_time.ToJsonString() if request.HasField("end_time") else None,
        "sensors": list(request.sensors),
        "quantities": list(request.quantities),
        "interval": request.interval.ToJsonString() if request.HasField("interval") else None,
    }


def _series_data(page: _Page, ref: SeriesRef) -> query_pb2.SeriesData:
    return page.response.series.add(sensor=ref.sensor, quantity=ref.quantity, unit=ref.unit)


def _series_columns(page: _Page, ref: SeriesRef) -> query_pb2.SeriesColumns:
    return page.response.columns.add(sensor=ref.sensor, quantity=ref.quantity, unit=ref.unit)


def _add_points(page: _Page, ref: SeriesRef, rows: list[asyncpg.Record]) -> None:
    """Raw rows into the page: a Point per row, or (columns) each column extended at once
    from the rows, with no message per point."""
    if page.columns:  # rows read with micros=True
        columns = _series_columns(page, ref)
        columns.time_micros.extend([row["micros"] for row in rows])
        columns.values.extend([row["value"] for row in rows])
        return
    data = _series_data(page, ref)
    for row in rows:
        micros = _micros(row["time"])
        point = data.points.add(value=row["value"])
        point.time.seconds, point.time.nanos = divmod(micros, 1_000_000)
        point.time.nanos *= 1000


def _add_buckets(page: _Page, ref: SeriesRef, rows: list[history.BucketRow]) -> None:
    """Bucket rows into the page, extending the series' entry if this page already has it
    (a series' buckets are read a window at a time)."""
    if page.columns:
        tail = page.response.columns[-1] if page.response.columns else None
        same = tail is not None and (tail.sensor, tail.quantity) == (ref.sensor, ref.quantity)
        columns = tail if same and tail is not None else _series_columns(page, ref)
        columns.time_micros.extend([_micros(row.start) for row in rows])
        columns.mins.extend([row.min for row in rows])
        columns.maxes.extend([row.max for row in rows])
        columns.means.extend([row.mean for row in rows])
        columns.counts.extend([row.count for row in rows])
        return
    last = page.response.series[-1] if page.response.series else None
    same = last is not None and (last.sensor, last.quantity) == (ref.sensor, ref.quantity)
    data = last if same and last is not None else _series_data(page, ref)
    for row in rows:
        bucket = data.buckets.add(min=row.min, max=row.max, mean=row.mean, count=row.count)
        bucket.start_time.FromDatetime(row.start)


async def _fill_raw(
    conn: asyncpg.Connection, page: _Page, ref: SeriesRef, start: datetime, end: datetime, after: Any
) -> None:
    resume = (_from_micros(after[0]), int(after[1])) if after else None
    rows = await history.raw_points(conn, ref, start, end, resume, page.remaining + 1, micros=page.columns)
    if not rows:
        return
    full = len(rows) > page.remaining
    rows = rows[: page.remaining]
    _add_points(page, ref, rows)
    page.remaining -= len(rows)
    if full:
        last = rows[-1]
        at = last["micros"] if page.columns else _micros(last["time"])
        page.cursor = {"q": list(ref.order_key), "a": [at, last["sequence"]]}


async def _fill_buckets(
    conn: asyncpg.Connection,
    page: _Page,
    ref: SeriesRef,
    backend: Backend,
    window: tuple[datetime, datetime],
    interval: timedelta,
) -> None:
    start, end = window
    while start < end and page.remaining > 0:
        rows, window_end = await history.buckets(conn, ref, backend, start, end, interval, page.remaining + 1)
        if rows:
            _add_buckets(page, ref, rows[: page.remaining])
        if len(rows) > page.remaining:
            page.cursor = {"q": list(ref.order_key), "b": _micros(rows[page.remaining].start)}
            page.remaining = 0
            return
        page.remaining -= len(rows)
        start = window_end
        if not rows and start < end:
            found = await history.next_time(conn, ref, start, end)
            if found is None:
                return
            start = found
    if start < end and page.remaining == 0:
        page.cursor = {"q": list(ref.order_key), "b": _micros(start)}


def _resolve(
    request: query_pb2.ListReadingsRequest,
    parameters: dict[str, Any],
    default_span: timedelta,
    now: datetime,
) -> tuple[dict[str, Any], datetime, datetime]:
    """The page token's cursor (empty on a first page) and the time range. A
    later page takes the range the first page resolved, from its token, so a
    defaulted end time of "now" stays the same on every page."""
    if request.page_token:
        cursor = _checked_cursor(page_tokens.decode(request.page_token, _PAGE_KIND, parameters))
        return cursor, _from_micros(int(cursor["s"])), _from_micros(int(cursor["e"]))
    start, end = time_range(
        request.start_time if request.HasField("start_time") else None,
        request.end_time if request.HasField("end_time") else None,
        default_span,
        now,
    )
    return {}, start, end


async def _fill_page(
    conn: asyncpg.Connection,
    backend: Backend,
    page: _Page,
    series: list[SeriesRef],
    cursor: dict[str, Any],
    window: tuple[datetime, datetime],
    interval: timedelta,
) -> None:
    """Fill `page` from `series` in order, resuming at the cursor's series and
    point or bucket. Stops at the first series that leaves a cursor, or before
    the next series once the page is full (the cursor then names that series)."""
    start, end = window
    resume_key = tuple(cursor["q"]) if "q" in cursor else None
    for ref in series:
        if resume_key is not None and ref.order_key < resume_key:
            continue
        resuming = resume_key is not None and ref.order_key == resume_key
        if page.remaining == 0:
            page.cursor = {"q": list(ref.order_key)}
            break
        if interval:
            series_start = max(start, _from_micros(cursor["b"])) if resuming and "b" in cursor else start
            await _fill_buckets(conn, page, ref, backend, (series_start, end), interval)
        else:
            await _fill_raw(conn, page, ref, start, end, cursor.get("a") if resuming else None)
        if page.cursor is not None:
            break


async def list_readings(
    conn: asyncpg.Connection,
    backend: Backend,
    request: query_pb2.ListReadingsRequest,
    *,
    default_page_size: int,
    default_span: timedelta,
    now: datetime,
) -> query_pb2.ListReadingsResponse:
    """One page of a device's readings; raises InvalidArgument or NotFound."""
    validate_with(
        request,
        lambda: (
            filter_violations(request.sensors, request.quantities)
            + interval_violations(request.interval if request.HasField("interval") else None)
        ),
    )
    parameters = _token_parameters(request)
    cursor, start, end = _resolve(request, parameters, default_span, now)
    interval = request.interval.ToTimedelta() if request.HasField("interval") else timedelta(0)
    series = await device_series(conn, request.device_id, request.sensors, request.quantities)
    if not series and not await device_exists(conn, request.device_id):
        raise NotFound(f"device {request.device_id!r} does not exist")
    page = _Page(
        query_pb2.ListReadingsResponse(),
        request.page_size or default_page_size,
        columns=request.view == query_pb2.READINGS_VIEW_COLUMNS,
    )
    await _fill_page(conn, backend, page, series, cursor, (start, end), interval)
    if page.cursor is not None:
        page.cursor.update(s=_micros(start), e=_micros(end))
        page.response.next_page_token = page_tokens.encode(_PAGE_KIND, parameters, page.cursor)
    return page.response
