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
    return mqtt.Settings.model_validate({"topics": ["#"], **options})


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
