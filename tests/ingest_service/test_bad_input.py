"""Every kind of bad input has a defined answer: a malformed batch is refused
whole with field violations and nothing moves; a bad reading is refused alone,
kept in the dead-letter table with its reason, and the mark moves past it."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from datetime import timedelta

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.columnar import columnar_request
from sensormesh_core.telemetry import Telemetry
from tests.ingest_service.conftest import Device, details, violations
from tests.ingest_service.readings import batch, expected, mark, reading, stored, stream

pytestmark = pytest.mark.storage
UPLOAD_FORMS = ("rows", "columns")

Mutation = Callable[[reading_pb2.Reading], None]


def _set_imu(field: str, value: float) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.ClearField("environment")
        r.imu.acceleration_z_mps2 = 9.8
        setattr(r.imu, field, value)

    return mutate


def _time(seconds: float) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.sample_time.seconds = int(seconds)

    return mutate


def _unknown_payload(r: reading_pb2.Reading) -> None:
    r.ClearField("payload")
    # Field 15, length-delimited: a payload kind added by newer contracts.
    r.MergeFromString(b"\x7a\x03\x0d\x00\x00")


def _system(**fields: int) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.system.SetInParent()
        for name, value in fields.items():
            setattr(r.system, name, value)

    return mutate


def _link_health(**fields: float) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.link_health.SetInParent()
        for name, value in fields.items():
            setattr(r.link_health, name, value)

    return mutate


def _sensor(name: str) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.sensor = name

    return mutate


def _measurement(name: str) -> Mutation:
    def mutate(r: reading_pb2.Reading) -> None:
        r.measurement.name, r.measurement.value = name, 1.0

    return mutate


NOW = time.time()
BAD_READINGS = {
    "not finite": (_set_imu("acceleration_x_mps2", math.nan), "reading.imu.acceleration_x_mps2", "finite"),
    "infinite": (_set_imu("angular_rate_z_dps", math.inf), "reading.imu.angular_rate_z_dps", "finite"),
    "out of range": (_set_imu("acceleration_y_mps2", 2000.5), "reading.imu.acceleration_y_mps2", "2000"),
    "no sample time": (lambda r: r.ClearField("sample_time"), "reading.sample_time", "required"),
    "too far ahead": (_time(NOW + 3600), "reading.sample_time", "ahead of the server's clock"),
    "before the floor": (_time(1_000), "reading.sample_time", "time floor"),
    "older than retention": (_time(NOW - 40 * 86400), "reading.sample_time", "retention"),
    "no payload": (lambda r: r.ClearField("payload"), "reading.payload", "required"),
    "unknown payload": (_unknown_payload, "reading.payload", "unknown payload (field 15)"),
    "bad sensor name": (_sensor("-starts with a dash"), "reading.sensor", "pattern"),
    "empty system payload": (_system(), "reading.system", "at least one"),
    "disk size beyond bigint": (_system(disk_used_bytes=2**63), "reading.system.disk_used_bytes", "at most"),
    "reserved measurement name": (_measurement("temperature"), "reading.measurement.name", "must not be in"),
    "battery above 100 %": (
        _link_health(battery_level_percent=100.5, signal_strength_dbm=-60),
        "reading.link_health.battery_level_percent",
        "100",
    ),
    "signal beyond a radio's range": (
        _link_health(battery_level_percent=80, signal_strength_dbm=127),  # Bluetooth's "not available"
        "reading.link_health.signal_strength_dbm",
        "30",
    ),
    "empty link-health payload": (_link_health(), "reading.link_health", "at least one"),
    "link-health name as a measurement": (
        _measurement("battery_level"),
        "reading.measurement.name",
        "must not be in",
    ),
}


# The same bad readings in a columnar batch: where the rejection points (`{entry}` is the
# reading's entry, `{element}` its element), and the reason where it differs. A payload the
# contract does not know has no columns (test_columns_of_an_unknown_payload_are_dead_lettered).
COLUMN_FIELDS = {
    "not finite": "{entry}.imu.acceleration_x_mps2[{element}]",
    "infinite": "{entry}.imu.angular_rate_z_dps[{element}]",
    "out of range": "{entry}.imu.acceleration_y_mps2[{element}]",
    "no sample time": "{entry}.time_deltas_micros[{element}]",  # a time of 0 is 1970-01-01
    "too far ahead": "{entry}.time_deltas_micros[{element}]",
    "before the floor": "{entry}.time_deltas_micros[{element}]",
    "older than retention": "{entry}.time_deltas_micros[{element}]",
    "bad sensor name": "{entry}.sensor",
    "empty system payload": "{entry}.system",
    "disk size beyond bigint": "{entry}.system.disk_used_bytes[{element}]",
    "reserved measurement name": "{entry}.measurement.name",
    "battery above 100 %": "{entry}.link_health.battery_level_percent[{element}]",
    "signal beyond a radio's range": "{entry}.link_health.signal_strength_dbm[{element}]",
    "empty link-health payload": "{entry}.link_health",
    "link-health name as a measurement": "{entry}.measurement.name",
}
COLUMN_REASONS = {"no sample time": "greater than"}


def place(request: ingest_pb2.UploadReadingsRequest, sequence: int) -> tuple[int, int]:
    """(entry, element) of reading `sequence` in a columnar batch."""
    for index, entry in enumerate(request.columns):
        numbers = list(itertools.accumulate(entry.sequence_deltas))
        if sequence in numbers:
            return index, numbers.index(sequence)
    raise AssertionError(f"no reading {sequence} in the columns")


@pytest.mark.parametrize("case", BAD_READINGS, ids=list(BAD_READINGS))
async def test_a_bad_reading_is_dead_lettered_and_the_mark_moves_past_it(
    case: str,
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    db: asyncpg.Connection,
    upload_form: str,
) -> None:
    mutate, field, reason = BAD_READINGS[case]
    request = batch(device.device_id, 1, 10)
    bad = request.readings[4]  # sequence 5
    mutate(bad.reading)
    index = 4
    if upload_form == "columns":
        if case not in COLUMN_FIELDS:
            pytest.skip("no columns for it: test_columns_of_an_unknown_payload_are_dead_lettered")
        request = columnar_request(request)
        entry, index = place(request, 5)
        field = COLUMN_FIELDS[case].format(entry=f"columns[{entry}]", element=index)
        reason = COLUMN_REASONS.get(case, reason)

    response = await stub.UploadReadings(stream([request]), metadata=device.metadata)

    assert (response.committed_sequence, response.accepted_count, response.rejected_count) == (10, 9, 1)
    rejected = response.rejected[0]
    assert (rejected.sequence, rejected.index, rejected.field) == (5, index, field)
    assert reason in rejected.reason
    letters = await db.fetch("SELECT device_id, sequence, field, reason, reading FROM dead_letters")
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["device_id"], letter["sequence"], letter["field"]) == (device.device_id, 5, field)
    assert reason in letter["reason"]
    if case not in COLUMN_REASONS or upload_form == "rows":
        # kept whole, unknown fields too; from columns, the reading as rows would have sent it
        assert letter["reading"] == bad.reading.SerializeToString()
    assert await stored(db, device.device_id) == expected(set(range(1, 11)) - {5})
    assert await mark(db, device.device_id) == 10


async def test_columns_of_an_unknown_payload_are_dead_lettered(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    request = columnar_request(batch(device.device_id, 1, 10))
    newer = request.columns.add(sensor="radar-0", sequence_deltas=[11, 1], time_deltas_micros=[1, 1])
    newer.time_deltas_micros[0] = request.columns[0].time_deltas_micros[0]
    newer.MergeFromString(b"\x7a\x03\x0d\x00\x00")  # field 15: a payload kind of newer contracts
    request.last_sequence = 12
    entry = len(request.columns) - 1

    response = await stub.UploadReadings(stream([request]), metadata=device.metadata)

    assert (response.committed_sequence, response.accepted_count, response.rejected_count) == (12, 10, 2)
    assert [(r.sequence, r.index, r.field) for r in response.rejected] == [
        (11, 0, f"columns[{entry}].payload"),
        (12, 1, f"columns[{entry}].payload"),
    ]
    assert all("unknown payload (field 15)" in r.reason for r in response.rejected)
    letters = await db.fetch("SELECT sequence, reading FROM dead_letters ORDER BY sequence")
    assert [r["sequence"] for r in letters] == [11, 12]
    assert letters[0]["reading"] == newer.SerializeToString()  # the entry whole, unknown fields too
    assert await stored(db, device.device_id) == expected(range(1, 11))


async def test_refused_readings_are_logged_with_device_and_reason(
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    caplog: pytest.LogCaptureFixture,
    upload_form: str,
) -> None:
    request = batch(device.device_id, 1, 10)
    request.readings[6].reading.imu.acceleration_x_mps2 = math.inf

    with caplog.at_level("INFO"):
        await stub.UploadReadings(stream([request, request]), metadata=device.metadata)

    refused = [r.getMessage() for r in caplog.records if "event=readings_dead_lettered" in r.getMessage()]
    assert len(refused) == 1
    assert f"device={device.device_id}" in refused[0] and "sequence=7" in refused[0]
    field = "reading.imu.acceleration_x_mps2"
    if upload_form == "columns":
        entry, element = place(columnar_request(request), 7)
        field = f"columns[{entry}].imu.acceleration_x_mps2[{element}]"
    assert f"field={field}" in refused[0]
    assert any(
        "event=duplicates_dropped" in r.getMessage() and "duplicates=10" in r.getMessage()
        for r in caplog.records
    )


async def test_dead_letters_of_a_replayed_batch_are_not_stored_twice(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    request = batch(device.device_id, 1, 10)
    request.readings[2].reading.imu.acceleration_x_mps2 = math.nan

    await stub.UploadReadings(stream([request]), metadata=device.metadata)
    again = await stub.UploadReadings(stream([request]), metadata=device.metadata)

    assert (again.rejected_count, again.duplicate_count) == (0, 10)
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 1


def _out_of_order(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.readings[3].sequence = 2


def _after_last(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.readings[9].sequence = 11


def _before_first(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.first_sequence = 2


def _last_before_first(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.last_sequence = 0


def _malformed_device(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.device_id = "Greenhouse_Pi"


def _thinned_backwards(request: ingest_pb2.UploadReadingsRequest) -> None:
    report = request.thinned.add(sensor="imu", count=5)
    report.first_sample_time.CopyFrom(request.readings[9].reading.sample_time)
    report.last_sample_time.CopyFrom(request.readings[0].reading.sample_time)


def _last_beyond_bigint(request: ingest_pb2.UploadReadingsRequest) -> None:
    request.last_sequence = 2**63  # PostgreSQL's bigint ends at 2^63-1


def _input_errors_beyond_bigint(request: ingest_pb2.UploadReadingsRequest) -> None:
    status = request.input_statuses.add(input="bme280", state=2, error_count=2**63)
    status.observe_time.CopyFrom(request.readings[0].reading.sample_time)


BAD_BATCHES = {
    "out of order": (_out_of_order, "readings[3].sequence", "greater than 3"),
    "after last_sequence": (_after_last, "readings[9].sequence", "after the batch's last_sequence 10"),
    "before first_sequence": (_before_first, "readings[0].sequence", "greater than 1"),
    "last before first": (_last_before_first, "last_sequence", ""),
    "malformed device id": (_malformed_device, "device_id", "pattern"),
    "thinned backwards in time": (_thinned_backwards, "thinned[0]", "must not be before first_sample_time"),
    "last beyond bigint": (_last_beyond_bigint, "last_sequence", "less than or equal to 9223372036854775807"),
    "input errors beyond bigint": (
        _input_errors_beyond_bigint,
        "input_statuses[0].error_count",
        "9223372036854775807",
    ),
}


# Sequence numbers out of order have no columns (a delta is at least 1): see
# tests/bad_input/test_properties_columnar.py for malformed columnar batches.
ROWS_ONLY = {"out of order", "after last_sequence", "before first_sequence"}


@pytest.mark.parametrize("case", BAD_BATCHES, ids=list(BAD_BATCHES))
async def test_a_malformed_batch_is_refused_whole_and_nothing_moves(
    case: str,
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    db: asyncpg.Connection,
    upload_form: str,
) -> None:
    if upload_form == "columns" and case in ROWS_ONLY:
        pytest.skip("sequence order in columns: tests/bad_input/test_properties_columnar.py")
    mutate, field, description = BAD_BATCHES[case]
    request = batch(device.device_id, 1, 10)
    mutate(request)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadReadings(stream([request]), metadata=device.metadata)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    found = violations(refused.value)
    assert field in found, found
    assert description in found[field]
    assert details(refused.value)["ErrorInfo"].reason == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    assert await stored(db, device.device_id) == expected([])
    assert await mark(db, device.device_id) == 0
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_batches_before_a_malformed_one_are_committed(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection, upload_form: str
) -> None:
    broken = batch(device.device_id, 21, 30)
    if upload_form == "columns":
        broken = columnar_request(broken)
        broken.columns[0].sequence_deltas[2] = 0
    else:
        _out_of_order(broken)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadReadings(
            stream([batch(device.device_id, 1, 10), batch(device.device_id, 11, 20), broken]),
            metadata=device.metadata,
        )

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert await mark(db, device.device_id) == 20
    assert await stored(db, device.device_id) == expected(range(1, 21))


async def test_a_stream_may_not_change_device(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadReadings(
            stream([batch(device.device_id, 1, 10), batch("another-pi", 11, 20)]), metadata=device.metadata
        )

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "device_id" in violations(refused.value)
    assert await mark(db, device.device_id) == 10


@pytest.fixture
def small_limits(ingest_settings: IngestSettings) -> IngestSettings:
    ingest_settings.ingest_max_batch_readings = 5
    ingest_settings.ingest_max_message_bytes = 64 * 1024
    return ingest_settings


async def test_an_oversize_batch_is_refused(
    small_limits: IngestSettings, telemetry: Telemetry, device: Device, db: asyncpg.Connection
) -> None:
    server: IngestServer = await start(small_limits, telemetry=telemetry)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as too_many:
                await stub.UploadReadings(stream([batch(device.device_id, 1, 6)]), metadata=device.metadata)
            big = batch(device.device_id, 1, 3)
            big.readings[0].reading.sensor = "x" * (70 * 1024)
            with pytest.raises(grpc.aio.AioRpcError) as too_big:
                await stub.UploadReadings(stream([big]), metadata=device.metadata)
            write = ingest_pb2.WriteReadingsRequest(
                device_id=device.device_id, readings=[reading(i) for i in range(1, 7)]
            )
            with pytest.raises(grpc.aio.AioRpcError) as too_many_writes:
                await stub.WriteReadings(write, metadata=device.metadata)
    finally:
        await server.stop(grace=5)

    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 5 readings" in violations(too_many.value)["readings"]
    assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert too_many_writes.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "readings" in violations(too_many_writes.value)
    assert await mark(db, device.device_id) == 0


async def test_write_readings_stores_the_valid_and_reports_the_rest(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    readings = [reading(s) for s in range(1, 4)]
    readings[1].imu.acceleration_x_mps2 = math.inf

    response = await stub.WriteReadings(
        ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings),
        metadata=device.metadata,
    )

    assert (response.committed_sequence, response.accepted_count, response.rejected_count) == (3, 2, 1)
    assert (response.rejected[0].sequence, response.rejected[0].field) == (
        2,
        "reading.imu.acceleration_x_mps2",
    )
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_write_readings_with_every_reading_bad_is_refused_and_stores_nothing(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    readings = [reading(s) for s in range(1, 3)]
    readings[0].imu.acceleration_x_mps2 = math.nan
    readings[1].ClearField("sample_time")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings),
            metadata=device.metadata,
        )

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(refused.value)) == {
        "readings[0].imu.acceleration_x_mps2",
        "readings[1].sample_time",
    }
    assert await mark(db, device.device_id) == 0
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_an_empty_write_is_refused(stub: ingest_pb2_grpc.IngestServiceStub, device: Device) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=device.device_id), metadata=device.metadata
        )

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "readings" in violations(refused.value)


async def test_a_reading_far_in_the_past_within_retention_gets_its_partition(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    request = batch(device.device_id, 1, 3)
    request.readings[1].reading.sample_time.seconds = int(NOW - timedelta(days=20).total_seconds())

    response = await stub.UploadReadings(stream([request]), metadata=device.metadata)

    assert (response.accepted_count, response.rejected_count) == (3, 0)
    assert await stored(db, device.device_id) == expected(range(1, 4))
