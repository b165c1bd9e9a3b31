"""Link-health readings through real gRPC into PostgreSQL: one typed row each, under the
sensor they describe (the same sensor as its data), absent fields NULL, and each quantity's
latest value kept on its own, so a reading with only a signal strength leaves the last
battery level standing."""

from __future__ import annotations

import asyncpg
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, reading_pb2

from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import stamp

pytestmark = pytest.mark.storage

SENSOR = "ble:wt901-C8:2B:96:A1:5E:0F"


def _link(sequence: int, **fields: float) -> reading_pb2.Reading:
    return reading_pb2.Reading(
        sensor=SENSOR, sample_time=stamp(sequence), link_health=reading_pb2.LinkHealthPayload(**fields)
    )


def _imu(sequence: int) -> reading_pb2.Reading:
    return reading_pb2.Reading(
        sensor=SENSOR, sample_time=stamp(sequence), imu=reading_pb2.ImuPayload(acceleration_z_mps2=9.75)
    )


async def test_link_health_is_stored_typed_beside_the_sensors_data(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, first_sequence=1)
    request.readings.extend(
        [
            _imu(1),
            _link(2, battery_level_percent=87, battery_voltage_volts=3.75, signal_strength_dbm=-71),
            _imu(3),
            _link(4, signal_strength_dbm=-88.5, link_quality_percent=62.5),
        ]
    )

    response = await stub.WriteReadings(request, metadata=device.metadata)

    assert (response.accepted_count, response.rejected_count) == (4, 0)
    rows = await db.fetch(
        "SELECT r.sequence, s.name, r.battery_level, r.battery_voltage, r.signal_strength, r.link_quality "
        "FROM link_health_readings r JOIN sensors s USING (sensor_id) ORDER BY r.sequence"
    )
    assert [tuple(r) for r in rows] == [
        (2, SENSOR, 87.0, 3.75, -71.0, None),
        (4, SENSOR, None, None, -88.5, 62.5),
    ]
    assert await db.fetchval("SELECT count(DISTINCT sensor_id) FROM imu_readings") == 1
    assert await db.fetchval("SELECT count(*) FROM sensors WHERE device_id = $1", device.device_id) == 1
    latest = await db.fetch(
        "SELECT se.quantity, se.unit, lv.value, lv.sequence FROM latest_values lv "
        "JOIN series se USING (series_id) WHERE se.quantity = ANY($1::text[]) ORDER BY se.quantity",
        ["battery_level", "battery_voltage", "signal_strength", "link_quality"],
    )
    assert [tuple(r) for r in latest] == [
        ("battery_level", "%", 87.0, 2),
        ("battery_voltage", "V", 3.75, 2),
        ("link_quality", "%", 62.5, 4),
        ("signal_strength", "dB[mW]", -88.5, 4),
    ]


async def test_a_late_link_health_reading_does_not_replace_a_newer_latest_value(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    newer = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, first_sequence=1)
    newer.readings.append(_link(200, battery_level_percent=40))
    older = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, first_sequence=2)
    older.readings.append(_link(100, battery_level_percent=90))  # sampled earlier, sent later

    await stub.WriteReadings(newer, metadata=device.metadata)
    await stub.WriteReadings(older, metadata=device.metadata)

    assert await db.fetchval("SELECT count(*) FROM link_health_readings") == 2
    value = await db.fetchval(
        "SELECT lv.value FROM latest_values lv JOIN series se USING (series_id) WHERE se.quantity = 'battery_level'"
    )
    assert value == 40
