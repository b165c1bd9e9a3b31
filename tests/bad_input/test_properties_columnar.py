"""Properties of the columnar upload (`UploadReadingsRequest.columns`) through the real stack.

1. The same readings sent as rows by one device and as columns by another store identical
   rows: every reading table (values, times, sequence numbers, sensors), the series,
   the latest values, the dead letters (sequence, reason, the reading's bytes) and the
   mark, and both streams get the same answer. Hypothesis draws 1-3 batches of 1-40
   readings of every payload kind, a part of them breaking a rule (NaN, infinity, out of
   range, times outside the window, a bad sensor or reserved measurement name, an empty
   system or link-health payload, disk sizes beyond bigint), optional fields present or
   not, gaps in the numbering and sometimes a replayed batch.
2. A malformed columnar batch (arrays of different lengths, a sequence delta of 0, numbers
   outside the batch or in two entries, readings and columns together, times beyond
   int64) answers INVALID_ARGUMENT naming the field, stores nothing and moves nothing;
   the batches before it in the stream are committed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import event, given
from hypothesis import strategies as st
from sensormesh.v1 import ingest_pb2, reading_pb2

from sensormesh_core.columnar import columnar_request
from tests.bad_input.budget import examples
from tests.bad_input.messages import UPLOAD
from tests.bad_input.stack import Device, Stack, client_stream, committed, stored_count

pytestmark = pytest.mark.storage

NOW = int(time.time())
BASE_MICROS = (NOW - 600) * 1_000_000  # ten minutes ago


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Mostly valid float32 values, sometimes out of range or not finite."""
    valid = st.floats(lo, hi, width=32)
    bad = st.sampled_from([math.nan, math.inf, -math.inf, hi * 2 + 1, lo * 2 - 1])
    return st.one_of(valid, valid, valid, bad)


def _optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


_times = st.one_of(
    st.integers(-300_000_000, 300_000_000).map(lambda d: BASE_MICROS + d),
    st.integers(-300_000_000, 300_000_000).map(lambda d: BASE_MICROS + d),
    st.sampled_from([(NOW + 86_400) * 1_000_000, 1_000 * 1_000_000, (NOW - 40 * 86_400) * 1_000_000]),
)
_disk = st.one_of(st.none(), st.integers(0, 2**40), st.just(2**63))


@st.composite
def _reading(draw: st.DrawFn) -> reading_pb2.Reading:
    at = draw(_times)
    reading = reading_pb2.Reading(sample_time=Timestamp(seconds=at // 1_000_000, nanos=at % 1_000_000 * 1000))
    kind = draw(st.sampled_from(["imu", "imu", "environment", "system", "measurement", "link_health"]))
    if kind == "imu":
        reading.sensor = draw(st.sampled_from(["mpu6050-0x68", "ble:wt901-C8:2B", "-bad name"]))
        for name in ("acceleration_x_mps2", "acceleration_y_mps2", "acceleration_z_mps2"):
            setattr(reading.imu, name, draw(_floats(-2000, 2000)))
        for name in ("angular_rate_x_dps", "angular_rate_y_dps", "angular_rate_z_dps"):
            setattr(reading.imu, name, draw(_floats(-10000, 10000)))
    elif kind == "environment":
        reading.sensor = draw(st.sampled_from(["bme280-0x76", "bmp280-0x77"]))
        reading.environment.temperature_celsius = draw(_floats(-100, 200))
        for name, hi in (("relative_humidity_percent", 100), ("pressure_hpa", 2000)):
            value = draw(_optional(_floats(0, hi)))
            if value is not None:
                setattr(reading.environment, name, value)
    elif kind == "system":
        reading.sensor = draw(st.sampled_from(["soc", "disk:root"]))
        reading.system.SetInParent()
        cpu = draw(_optional(_floats(-100, 200)))
        if cpu is not None:
            reading.system.cpu_temperature_celsius = cpu
        for name in ("disk_used_bytes", "disk_free_bytes"):
            value = draw(_disk)
            if value is not None:
                setattr(reading.system, name, value)
    elif kind == "measurement":
        reading.sensor = draw(st.sampled_from(["soil-probe", "clamp"]))
        reading.measurement.name = draw(st.sampled_from(["soil_moisture", "current", "temperature"]))
        reading.measurement.unit = draw(st.sampled_from(["%", "A"]))
        reading.measurement.value = draw(
            st.one_of(st.floats(-1e9, 1e9), st.floats(-1e9, 1e9), st.sampled_from([math.nan, 2.0**60]))
        )
    else:
        reading.sensor = "ble:wt901-C8:2B"
        reading.link_health.SetInParent()
        for name, lo, hi in (
            ("battery_level_percent", 0, 100),
            ("battery_voltage_volts", 0, 100),
            ("signal_strength_dbm", -150, 30),
            ("link_quality_percent", 0, 100),
        ):
            value = draw(_optional(_floats(lo, hi)))
            if value is not None:
                setattr(reading.link_health, name, value)
    return reading


@dataclass(frozen=True)
class Upload:
    """Batches of one stream, as rows."""

    batches: list[ingest_pb2.UploadReadingsRequest]


@st.composite
def _uploads(draw: st.DrawFn) -> Upload:
    batches = []
    sequence = 0
    for _ in range(draw(st.integers(1, 3))):
        first = sequence + 1
        request = ingest_pb2.UploadReadingsRequest(first_sequence=first)
        for reading in draw(st.lists(_reading(), min_size=1, max_size=40)):
            sequence += draw(st.sampled_from([1, 1, 1, 2, 5]))
            request.readings.add(sequence=sequence, reading=reading)
        request.last_sequence = sequence + draw(st.sampled_from([0, 0, 3]))
        sequence = request.last_sequence
        batches.append(request)
    if draw(st.booleans()):
        replayed = ingest_pb2.UploadReadingsRequest()
        replayed.CopyFrom(batches[draw(st.integers(0, len(batches) - 1))])
        batches.append(replayed)
    return Upload(batches)


def _send(stack: Stack, device: Device, batches: list[ingest_pb2.UploadReadingsRequest]) -> Any:
    for request in batches:
        request.device_id = device.device_id
    outcome = client_stream(
        stack.ingest_target, UPLOAD, [b.SerializeToString() for b in batches], device.metadata
    )
    assert outcome.code.value[0] == 0, outcome
    response = ingest_pb2.UploadReadingsResponse.FromString(outcome.response)
    return (
        response.committed_sequence,
        response.accepted_count,
        response.duplicate_count,
        response.rejected_count,
        [(r.sequence, r.reason) for r in response.rejected],
    )


_SENSORS = "JOIN sensors s USING (sensor_id) WHERE s.device_id = %(d)s ORDER BY sequence"
SNAPSHOT = {
    "imu": "SELECT r.time, r.sequence, s.name, acceleration_x, acceleration_y, acceleration_z, "
    f"angular_rate_x, angular_rate_y, angular_rate_z FROM imu_readings r {_SENSORS}",
    "environment": "SELECT r.time, r.sequence, s.name, temperature, relative_humidity, pressure "
    f"FROM environment_readings r {_SENSORS}",
    "system": f"SELECT r.time, r.sequence, s.name, cpu_temperature, disk_used, disk_free FROM system_readings r {_SENSORS}",
    "link_health": "SELECT r.time, r.sequence, s.name, battery_level, battery_voltage, signal_strength, "
    f"link_quality FROM link_health_readings r {_SENSORS}",
    "measurements": "SELECT m.time, m.sequence, s.name, v.quantity, v.unit, m.value FROM measurements m "
    "JOIN series v USING (series_id) JOIN sensors s ON s.sensor_id = v.sensor_id "
    "WHERE s.device_id = %(d)s ORDER BY sequence",
    "series": "SELECT s.name, v.quantity, v.unit FROM series v JOIN sensors s USING (sensor_id) "
    "WHERE s.device_id = %(d)s ORDER BY 1, 2",
    "latest": "SELECT s.name, v.quantity, l.time, l.value, l.sequence FROM latest_values l "
    "JOIN series v USING (series_id) JOIN sensors s ON s.sensor_id = v.sensor_id "
    "WHERE s.device_id = %(d)s ORDER BY 1, 2",
    "dead_letters": "SELECT sequence, reason, reading FROM dead_letters WHERE device_id = %(d)s ORDER BY sequence",
}


def _snapshot(db: psycopg.Connection, device_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        name: db.execute(sql, {"d": device_id}).fetchall() for name, sql in SNAPSHOT.items()
    }
    found["mark"] = committed(db, device_id)
    return found


@examples(40)
@given(upload=_uploads())
def test_rows_and_columns_of_the_same_readings_store_identical_rows(
    upload: Upload, stack: Stack, db: psycopg.Connection
) -> None:
    as_rows, as_columns = stack.register("rows"), stack.register("columns")

    answered_rows = _send(stack, as_rows, upload.batches)
    answered_columns = _send(stack, as_columns, [columnar_request(b) for b in upload.batches])

    assert answered_columns == answered_rows
    rows, columns = _snapshot(db, as_rows.device_id), _snapshot(db, as_columns.device_id)
    assert columns == rows
    event(f"rejected: {'some' if rows['dead_letters'] else 'none'}")
    assert stored_count(db, as_rows.device_id) == sum(
        len(rows[t]) for t in ("imu", "environment", "system", "link_health", "measurements")
    )


def _imu_batch(first: int, last: int, count: int = 4) -> ingest_pb2.UploadReadingsRequest:
    """A valid columnar batch: IMU readings first..first+count-1 and an environment entry."""
    request = ingest_pb2.UploadReadingsRequest(first_sequence=first, last_sequence=last)
    entry = request.columns.add(sensor="mpu6050-0x68")
    entry.sequence_deltas.extend([first] + [1] * (count - 1))
    entry.time_deltas_micros.extend([BASE_MICROS] + [10_000] * (count - 1))
    for field in reading_pb2.ImuColumns.DESCRIPTOR.fields:
        getattr(entry.imu, field.name).extend([0.5] * count)
    env = request.columns.add(
        sensor="bme280-0x76", sequence_deltas=[first + count], time_deltas_micros=[BASE_MICROS]
    )
    env.environment.temperature_celsius.append(21.5)
    return request


def _shorter(request: ingest_pb2.UploadReadingsRequest) -> str:
    del request.columns[0].imu.angular_rate_y_dps[-1]
    return "columns[0].imu.angular_rate_y_dps"


def _zero_delta(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns[0].sequence_deltas[2] = 0
    return "columns[0].sequence_deltas[2]"


def _beyond_last(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns[1].sequence_deltas[0] = request.last_sequence + 1
    return "columns[1].sequence_deltas"


def _before_first(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.first_sequence += 1
    return "columns[0].sequence_deltas"


def _shared(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns[1].sequence_deltas[0] = request.columns[0].sequence_deltas[0]
    return "columns[1].sequence_deltas"


def _times_shorter(request: ingest_pb2.UploadReadingsRequest) -> str:
    del request.columns[0].time_deltas_micros[-1]
    return "columns[0].time_deltas_micros"


def _optional_partly(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns[1].environment.pressure_hpa.extend([1000.0, 1000.0])
    return "columns[1].environment.pressure_hpa"


def _no_sequences(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns.add(sensor="soc").system.cpu_temperature_celsius.append(40)
    return "columns[2].sequence_deltas"


def _times_overflow(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.columns[0].time_deltas_micros[1] = 2**63 - 1
    request.columns[0].time_deltas_micros[2] = 2**63 - 1
    return "columns[0].time_deltas_micros"


def _with_readings(request: ingest_pb2.UploadReadingsRequest) -> str:
    request.readings.add(sequence=request.last_sequence, reading=reading_pb2.Reading(sensor="x"))
    return "columns"


DEFECTS = {
    f.__name__.lstrip("_"): f
    for f in (
        _shorter,
        _zero_delta,
        _beyond_last,
        _before_first,
        _shared,
        _times_shorter,
        _optional_partly,
        _no_sequences,
        _times_overflow,
        _with_readings,
    )
}


@examples(30)
@given(defect=st.sampled_from(sorted(DEFECTS)), count=st.integers(3, 50), before=st.booleans())
def test_a_malformed_columnar_batch_is_refused_naming_the_field(
    defect: str, count: int, before: bool, stack: Stack, db: psycopg.Connection
) -> None:
    device = stack.register("columns")
    good = _imu_batch(1, count + 1, count)
    bad = _imu_batch(count + 2, 2 * count + 2, count)
    field = DEFECTS[defect](bad)
    batches = [good, bad] if before else [bad]
    for request in batches:
        request.device_id = device.device_id

    outcome = client_stream(
        stack.ingest_target, UPLOAD, [b.SerializeToString() for b in batches], device.metadata
    )

    event(defect)
    assert outcome.code.name == "INVALID_ARGUMENT", outcome
    assert outcome.violations is not None and field in outcome.violations, outcome
    assert committed(db, device.device_id) == (count + 1 if before else 0)
    assert stored_count(db, device.device_id) == (count + 1 if before else 0)
