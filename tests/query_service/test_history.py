"""ListReadings and GetLatestReadings over real gRPC against a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import query_pb2, query_pb2_grpc

from tests.query_service.rpc_errors import field_violations
from tests.support.reading_writer import ReadingWriter, environment, imu, measurement

pytestmark = pytest.mark.storage

# A minute boundary well inside the partitions the fixtures create.
START = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def request(device: str, **fields: object) -> query_pb2.ListReadingsRequest:
    fields.setdefault("start_time", stamp(START))
    fields.setdefault("end_time", stamp(START + timedelta(hours=1)))
    return query_pb2.ListReadingsRequest(device_id=device, **fields)  # type: ignore[arg-type]


async def _write_mixed(writer: ReadingWriter, device: str) -> None:
    # 120 s of 1 Hz temperature (value = i), 20 IMU readings, 3 soil measurements.
    await writer.write(
        device, [environment("bme280", START + timedelta(seconds=i), float(i)) for i in range(120)]
    )
    await writer.write(device, [imu("mpu", START + timedelta(seconds=i), ax=float(i)) for i in range(20)])
    await writer.write(
        device,
        [
            measurement("soil", START + timedelta(seconds=10 * i), "soil_moisture", 30.0 + i, "%")
            for i in range(3)
        ],
    )


async def test_raw_points_per_series_filtered_in_order(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    got = await queries.ListReadings(
        request(device, quantities=["temperature", "soil_moisture", "acceleration_x"])
    )
    assert [(s.sensor, s.quantity, s.unit) for s in got.series] == [
        ("bme280", "temperature", "Cel"),
        ("mpu", "acceleration_x", "m/s2"),
        ("soil", "soil_moisture", "%"),
    ]
    temperature = got.series[0]
    assert [p.value for p in temperature.points] == [float(i) for i in range(120)]
    assert temperature.points[5].time.ToDatetime(tzinfo=UTC) == START + timedelta(seconds=5)
    assert not got.next_page_token

    only_mpu = await queries.ListReadings(request(device, sensors=["mpu"], quantities=["acceleration_x"]))
    assert [p.value for p in only_mpu.series[0].points] == [float(i) for i in range(20)]

    window = await queries.ListReadings(
        request(
            device,
            quantities=["temperature"],
            start_time=stamp(START + timedelta(seconds=10)),
            end_time=stamp(START + timedelta(seconds=20)),
        )
    )
    assert [p.value for p in window.series[0].points] == [float(i) for i in range(10, 20)]


async def test_downsampled_buckets_have_min_max_mean_count(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    got = await queries.ListReadings(
        request(device, quantities=["temperature"], interval=Duration(seconds=60))
    )
    (series,) = got.series
    assert [(b.count, b.min, b.max, b.mean) for b in series.buckets] == [
        (60, 0, 59, 29.5),
        (60, 60, 119, 89.5),
    ]
    assert series.buckets[1].start_time.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=1)
    assert not series.points

    # A range cutting into a bucket counts only the readings inside the range.
    cut = await queries.ListReadings(
        request(
            device,
            quantities=["temperature"],
            interval=Duration(seconds=60),
            start_time=stamp(START + timedelta(seconds=30)),
            end_time=stamp(START + timedelta(seconds=90)),
        )
    )
    assert [(b.count, b.min, b.max) for b in cut.series[0].buckets] == [(30, 30, 59), (30, 60, 89)]


async def test_pages_are_stable_and_cover_everything_once(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    full = await queries.ListReadings(request(device, page_size=100_000))
    expected = [(s.sensor, s.quantity, p.time.ToJsonString(), p.value) for s in full.series for p in s.points]

    pages: list[query_pb2.ListReadingsResponse] = []
    token = ""
    while True:
        page = await queries.ListReadings(request(device, page_size=37, page_token=token))
        assert sum(len(s.points) for s in page.series) <= 37
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
        # New readings arriving in the range later in time do not shift what was already paged.
        await writer.write(device, [environment("aaa-new", START + timedelta(minutes=50), 1.0)])
    got = [
        (s.sensor, s.quantity, p.time.ToJsonString(), p.value)
        for page in pages
        for s in page.series
        for p in s.points
    ]
    assert got == expected
    assert len(pages) == -(-len(expected) // 37)

    # The same token twice gives the same page.
    first = await queries.ListReadings(request(device, page_size=37))
    again = [
        await queries.ListReadings(request(device, page_size=37, page_token=first.next_page_token))
        for _ in range(2)
    ]
    assert again[0] == again[1]


async def test_downsampled_pages_resume_at_the_next_bucket(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    whole = await queries.ListReadings(
        request(device, quantities=["temperature"], interval=Duration(seconds=10))
    )
    buckets = [(b.start_time.ToJsonString(), b.count, b.mean) for b in whole.series[0].buckets]
    assert len(buckets) == 12
    paged: list[tuple[str, int, float]] = []
    token = ""
    while True:
        page = await queries.ListReadings(
            request(
                device,
                quantities=["temperature"],
                interval=Duration(seconds=10),
                page_size=5,
                page_token=token,
            )
        )
        paged += [(b.start_time.ToJsonString(), b.count, b.mean) for s in page.series for b in s.buckets]
        token = page.next_page_token
        if not token:
            break
    assert paged == buckets


async def test_a_day_of_1hz_data_downsamples_to_1440_buckets(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    day_start = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    seconds = 86_400
    await writer.write(
        device,
        [
            environment("bme280", day_start + timedelta(seconds=i), 20.0 + (i % 60) / 10)
            for i in range(seconds)
        ],
    )
    got = await queries.ListReadings(
        request(
            device,
            quantities=["temperature"],
            interval=Duration(seconds=60),
            start_time=stamp(day_start),
            end_time=stamp(day_start + timedelta(days=1)),
        )
    )
    (series,) = got.series
    assert len(series.buckets) == 1440 and not got.next_page_token
    assert all(b.count == 60 for b in series.buckets)
    assert series.buckets[0].min == pytest.approx(20.0) and series.buckets[0].max == pytest.approx(25.9)
    assert got.ByteSize() < 100_000  # a chart's worth: about 60 bytes per bucket


async def test_bad_ranges_intervals_filters_and_tokens_name_the_field(
    queries: query_pb2_grpc.QueryServiceStub, device: str
) -> None:
    cases = {
        "end_time": request(device, end_time=stamp(START - timedelta(seconds=1))),
        "interval": request(device, interval=Duration(nanos=500_000_000)),
        "sensors[1]": request(device, sensors=["ok", "-bad"]),
        "quantities[0]": request(device, quantities=["Temperature"]),
        "page_token": request(device, page_token="not-a-token"),
        "page_size": request(device, page_size=-1),
    }
    for field, bad in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await queries.ListReadings(bad)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in field_violations(caught.value), (field, field_violations(caught.value))


async def test_a_token_is_bound_to_its_query(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    first = await queries.ListReadings(request(device, page_size=10))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await queries.ListReadings(
            request(device, page_size=10, sensors=["mpu"], page_token=first.next_page_token)
        )
    assert "page_token" in field_violations(caught.value)


async def test_unknown_device_is_not_found(queries: query_pb2_grpc.QueryServiceStub) -> None:
    for call in (
        queries.ListReadings(request("pi-404")),
        queries.GetLatestReadings(query_pb2.GetLatestReadingsRequest(device_id="pi-404")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_latest_values_come_from_the_latest_table(
    queries: query_pb2_grpc.QueryServiceStub, writer: ReadingWriter, device: str
) -> None:
    await _write_mixed(writer, device)
    # A late, older reading does not replace the latest value.
    await writer.write(device, [environment("bme280", START - timedelta(hours=1), -5.0)])
    got = await queries.GetLatestReadings(query_pb2.GetLatestReadingsRequest(device_id=device))
    by_series = {(v.sensor, v.quantity): (v.value, v.sample_time.ToDatetime(tzinfo=UTC)) for v in got.values}
    assert by_series[("bme280", "temperature")] == (119.0, START + timedelta(seconds=119))
    assert by_series[("soil", "soil_moisture")] == (32.0, START + timedelta(seconds=20))
    assert len(got.values) == 1 + 6 + 1

    filtered = await queries.GetLatestReadings(
        query_pb2.GetLatestReadingsRequest(device_id=device, sensors=["mpu"], quantities=["acceleration_z"])
    )
    assert [(v.sensor, v.quantity, v.unit) for v in filtered.values] == [("mpu", "acceleration_z", "m/s2")]

    # Proof that no history is scanned: the readings are gone, the latest values stay.
    await writer.conn.execute("DELETE FROM environment_readings")
    still = await queries.GetLatestReadings(
        query_pb2.GetLatestReadingsRequest(device_id=device, sensors=["bme280"])
    )
    assert [v.value for v in still.values] == [119.0]
