"""The MQTT input: payload mapping, and subscriptions against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from sensormesh.v1 import ingest_pb2

from gateway_agent.inputs import mqtt
from gateway_agent.scheduler import Scheduler
from gateway_agent.status import StatusBoard
from sensormesh_core.telemetry import configure_telemetry
from sensormesh_core.validation import validate
from tests.gateway_agent.mosquitto import Broker, start_mosquitto
from tests.gateway_agent.support import Collector, until

pytestmark = pytest.mark.timeout(60)
NOW = 1_767_225_600 * 10**9


def settings(**options: object) -> mqtt.Settings:
    return mqtt.Settings.validate({"topics": ["#"], **options})


def test_plain_number_becomes_a_measurement_named_after_the_topic() -> None:
    [reading] = mqtt.payload_readings(
        "greenhouse/bed-2/soil_moisture", b" 31.5\n", NOW, settings(units={"soil_moisture": "%"})
    )
    validate(reading)
    assert reading.sensor == "mqtt:greenhouse/bed-2/soil_moisture"
    assert (reading.measurement.name, reading.measurement.value, reading.measurement.unit) == (
        "soil_moisture",
        31.5,
        "%",
    )
    assert reading.sample_time.ToNanoseconds() == NOW


def test_json_with_temperature_becomes_an_environment_reading_and_the_rest_measurements() -> None:
    payload = b'{"temperature": 21.4, "humidity": 48, "pressure": 1012.3, "battery": 97, "linkquality": 120,' \
              b' "occupancy": true, "power": {"voltage": 3.1}, "update": "idle"}'  # fmt: skip
    readings = mqtt.payload_readings("zigbee2mqtt/office", payload, NOW, settings(units={"battery": "%"}))
    for reading in readings:
        validate(reading)
    env = readings[0].environment
    assert (env.temperature_celsius, env.relative_humidity_percent, env.pressure_hpa) == pytest.approx(
        (21.4, 48, 1012.3)
    )
    measured = {r.measurement.name: (r.measurement.value, r.measurement.unit) for r in readings[1:]}
    assert measured == {
        "battery": (97, "%"),
        "linkquality": (120, ""),
        "occupancy": (1.0, ""),
        "power.voltage": (3.1, ""),
    }


def test_reserved_names_are_skipped_with_a_warning_unless_renamed(caplog: pytest.LogCaptureFixture) -> None:
    payload = b'{"cpu_temperature": 61.2, "Fan Speed": 1200}'
    readings = mqtt.payload_readings("pi/health", payload, NOW, settings())
    assert [r.measurement.name for r in readings] == ["fan_speed"]
    assert "field=cpu_temperature reason=reserved_quantity_name_rename_it" in caplog.text
    renamed = mqtt.payload_readings(
        "pi/health", payload, NOW, settings(rename={"cpu_temperature": "board_temp"})
    )
    assert {r.measurement.name for r in renamed} == {"board_temp", "fan_speed"}


LINK = {"battery_level": "meta_battery_level", "signal_strength": "meta_signal_strength"}


def test_link_fields_map_to_a_link_health_reading_of_the_same_sensor_and_not_to_measurements() -> None:
    payload = (
        b'{"temperature": 21.5, "meta_battery_level": 64, "meta_signal_strength": -78, "meta_uptime": 9}'
    )
    readings = mqtt.payload_readings("platform/node-7", payload, NOW, settings(link=LINK))
    for reading in readings:
        validate(reading)
    env, uptime, link = readings
    assert env.environment.temperature_celsius == pytest.approx(21.5)
    assert uptime.measurement.name == "meta_uptime"
    assert link.sensor == env.sensor == "mqtt:platform/node-7"
    assert (link.link_health.battery_level_percent, link.link_health.signal_strength_dbm) == (64, -78)
    assert not link.link_health.HasField("link_quality_percent")
    assert link.sample_time == env.sample_time


def test_link_fields_are_scaled_to_volts_and_percent() -> None:
    mapping = {"battery_voltage": "voltage", "battery_voltage_scale": 0.001, "link_quality": "linkquality",
               "link_quality_max": 255, "battery_level": "battery"}  # fmt: skip
    payload = b'{"battery": 91, "voltage": 2985, "linkquality": 102, "occupancy": false}'
    occupancy, link = mqtt.payload_readings("zigbee2mqtt/hall", payload, NOW, settings(link=mapping))
    validate(link)
    assert occupancy.measurement.name == "occupancy"
    assert link.link_health.battery_voltage_volts == pytest.approx(2.985)
    assert link.link_health.link_quality_percent == pytest.approx(40.0)
    assert link.link_health.battery_level_percent == 91


def test_a_mapped_value_outside_the_contract_is_left_out_and_the_rest_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = b'{"meta_battery_level": 120, "meta_signal_strength": -70}'
    [link] = mqtt.payload_readings("platform/node-8", payload, NOW, settings(link=LINK))
    validate(link)
    assert not link.link_health.HasField("battery_level_percent")
    assert link.link_health.signal_strength_dbm == -70
    assert "field=meta_battery_level reason=outside_0_to_100" in caplog.text
    assert (
        mqtt.payload_readings("platform/node-8", b'{"meta_signal_strength": 127}', NOW, settings(link=LINK))
        == []
    )


def test_link_field_names_are_reserved_for_the_typed_reading(caplog: pytest.LogCaptureFixture) -> None:
    readings = mqtt.payload_readings("x/y", b'{"battery_level": 50, "rssi": -60}', NOW, settings())
    assert [r.measurement.name for r in readings] == ["rssi"]
    assert "field=battery_level reason=reserved_quantity_name_rename_it" in caplog.text


def test_time_field_sets_the_sample_time() -> None:
    s = settings(time_field="ts")
    [by_seconds] = mqtt.payload_readings("t", b'{"ts": 1767225600.5, "v": 1}', NOW + 10**12, s)
    [by_millis] = mqtt.payload_readings("t", b'{"ts": 1767225600500, "v": 1}', NOW + 10**12, s)
    [by_text] = mqtt.payload_readings("t", b'{"ts": "2026-01-01T00:00:00.5Z", "v": 1}', NOW + 10**12, s)
    assert {r.sample_time.ToNanoseconds() for r in (by_seconds, by_millis, by_text)} == {NOW + 500_000_000}


def test_unusable_payloads_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert mqtt.payload_readings("door/state", b"OPEN", NOW, settings()) == []
    assert mqtt.payload_readings("x", b"[1, 2]", NOW, settings()) == []
    assert "event=mqtt_payload_skipped topic=door/state" in caplog.text


@contextlib.asynccontextmanager
async def scheduled(item: mqtt.Mqtt) -> AsyncIterator[tuple[Collector, StatusBoard]]:
    collector, board = Collector(), StatusBoard()
    meter = configure_telemetry("t", set_global=False).meter("t")
    scheduler = Scheduler([item], collector, board, meter, retry_initial=0.05, retry_max=0.2)
    task = asyncio.create_task(scheduler.run())
    try:
        yield collector, board
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _ok(board: StatusBoard, name: str) -> bool:
    _, statuses = board.changed_since(0)
    return any(s.input == name and s.state == ingest_pb2.INPUT_STATE_OK for s in statuses)


async def test_subscribed_topics_arrive_as_readings(broker: Broker, tmp_path: Path) -> None:
    prefix = f"sensormesh-test/{tmp_path.name}"
    item = mqtt.Mqtt(
        settings(host=broker.host, port=broker.port, topics=[f"{prefix}/#"], units={"current": "A"})
    )
    async with scheduled(item) as (collector, board):
        await until(lambda: _ok(board, item.name))
        async with aiomqtt.Client(broker.host, broker.port) as publisher:
            await publisher.publish(f"{prefix}/pump/current", b"2.75", qos=1)
            await publisher.publish(f"{prefix}/office", b'{"temperature": 22.5, "humidity": 41}', qos=1)
            await publisher.publish("elsewhere/ignored", b"1", qos=1)
            await until(lambda: len(collector.readings[item.name]) >= 2)
    current, office = collector.readings[item.name]
    assert (current.measurement.name, current.measurement.value, current.measurement.unit) == (
        "current",
        2.75,
        "A",
    )
    assert office.sensor == f"mqtt:{prefix}/office"[:64]
    assert office.environment.temperature_celsius == pytest.approx(22.5)


async def test_a_devices_battery_and_signal_arrive_through_the_broker_as_link_health(
    broker: Broker, tmp_path: Path
) -> None:
    topic = f"sensormesh-test/{tmp_path.name}/node-3"
    item = mqtt.Mqtt(settings(host=broker.host, port=broker.port, topics=[topic], link=LINK))
    async with scheduled(item) as (collector, board):
        await until(lambda: _ok(board, item.name))
        async with aiomqtt.Client(broker.host, broker.port) as publisher:
            payload = b'{"temperature": 19.0, "meta_battery_level": 18.5, "meta_signal_strength": -91}'
            await publisher.publish(topic, payload, qos=1)
            await until(lambda: len(collector.readings[item.name]) >= 2)
    env, link = collector.readings[item.name]
    assert env.environment.temperature_celsius == pytest.approx(19.0)
    assert link.sensor == env.sensor
    assert (link.link_health.battery_level_percent, link.link_health.signal_strength_dbm) == (18.5, -91)


async def test_broker_outage_is_reported_and_the_input_resubscribes(broker: Broker, tmp_path: Path) -> None:
    if broker.process is None:
        pytest.skip("restarting the broker needs our own mosquitto, not the machine's shared one")
    topic = "sensormesh-test/outage"
    item = mqtt.Mqtt(settings(host=broker.host, port=broker.port, topics=[topic]))
    async with scheduled(item) as (collector, board):
        await until(lambda: _ok(board, item.name))
        broker.process.kill()
        broker.process.wait(timeout=10)
        await until(lambda: board.error_count(item.name) >= 2)
        broker.process = await asyncio.to_thread(start_mosquitto, tmp_path, broker.port)
        await until(lambda: _ok(board, item.name))
        async with aiomqtt.Client(broker.host, broker.port) as publisher:
            await publisher.publish(topic, b"7", qos=1)
            await until(lambda: len(collector.readings[item.name]) >= 1)
    assert collector.readings[item.name][0].measurement.value == 7.0
