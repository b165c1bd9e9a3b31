"""Readings from an MQTT broker: devices that publish their own values (Tasmota, ESPHome, Zigbee2MQTT).

Wiring: none; the agent connects to the broker (often Mosquitto on the Pi
itself) and subscribes to the configured topics (wildcards allowed).

How payloads map to readings (one sensor per topic, "mqtt:<topic>"):
- a plain number ("21.5") -> one measurement named `measurement`, or after
  the topic's last level ("greenhouse/soil_moisture" -> soil_moisture);
- a JSON object -> one measurement per numeric field (booleans as 1 and 0,
  nested objects flattened with "."); text fields are ignored;
- in a JSON object, "temperature" (°C) with optional "humidity" (or
  "relative_humidity", %) and "pressure" (hPa) -> one environment reading,
  as typed as a BME280's. Other typed quantity names (the contract reserves
  them: cpu_temperature, disk_used, battery_level, ...) cannot be generic
  measurements: such fields are skipped with a warning; `rename` them to keep them;
- in a JSON object, the fields that `link` names (by their names in the
  payload, nested ones joined with ".") -> one link-health reading of the same
  sensor: battery level in %, battery voltage (× `battery_voltage_scale` to
  volts: 0.001 for millivolts, as Zigbee2MQTT sends), signal strength in dBm,
  link quality (÷ `link_quality_max` × 100 to percent: 255 for a Zigbee LQI).
  They are not sent as measurements too. A mapped value outside the contract's
  range (a battery of 120 %, an RSSI of 127) is left out with a warning, and
  the others still go.
Names are lower-cased and other characters become "_". A payload that is
neither is skipped with a warning naming the topic; the input keeps running.
Sample time: the arrival time, or the JSON field `time_field` (epoch seconds,
epoch milliseconds, or RFC 3339) when configured.

Sample config:

    [[inputs.mqtt]]
      ## The broker.
      # host = "127.0.0.1"
      # port = 1883
      # username = ""
      # password = ""
      # tls = false
      ## Topics to subscribe to (MQTT wildcards + and # allowed).
      topics = ["greenhouse/#"]
      ## Subscription QoS: 0, 1 or 2.
      # qos = 1
      ## Measurement name for plain numeric payloads; default: the topic's last level.
      # measurement = ""
      ## Units per measurement name, UCUM style.
      # units = { soil_moisture = "%", current = "A" }
      ## Field renames applied before mapping, e.g. to keep a reserved name generic.
      # rename = { cpu_temperature = "board_temperature" }
      ## JSON field holding the sample time; unset: the arrival time.
      # time_field = "time"
      ## MQTT client id; default "sensormesh-agent-<input name>".
      # client_id = ""
      ## Fields of the device's payload that are its battery and radio link (unset: none).
      # [inputs.mqtt.link]
      #   battery_level = "meta_battery_level"      # %
      #   signal_strength = "meta_signal_strength"  # dBm
      #   battery_voltage = "voltage"
      #   battery_voltage_scale = 0.001             # the field is in mV
      #   link_quality = "linkquality"
      #   link_quality_max = 255                    # the field's full scale (a Zigbee LQI)
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar

from buf.validate import validate_pb2
from msgspec import Meta, field
from sensormesh.v1 import reading_pb2

from gateway_agent.inputs.base import Emit, InputSettings
from gateway_agent.mqtt_broker import BrokerSettings, client
from gateway_agent.options import Options
from gateway_agent.readings import Reading, environment, link_health, measurement, now_ns, sensor_name

log = logging.getLogger(__name__)

RESERVED = frozenset({
    "acceleration_x", "acceleration_y", "acceleration_z", "angular_rate_x", "angular_rate_y",
    "angular_rate_z", "temperature", "relative_humidity", "pressure", "cpu_temperature",
    "disk_used", "disk_free", "battery_level", "battery_voltage", "signal_strength", "link_quality",
})  # fmt: skip
_NAME_FORBIDDEN = re.compile(r"[^a-z0-9_.-]")
_ENVIRONMENT_FIELDS = ("temperature", "humidity", "relative_humidity", "pressure")


class LinkFields(Options, kw_only=True, frozen=True):
    """Which fields of a device's JSON payload are its link health, and their scales."""

    battery_level: Annotated[str, Meta(description="Field with the battery level in %.")] | None = None
    battery_voltage: Annotated[str, Meta(description="Field with the battery voltage.")] | None = None
    battery_voltage_scale: Annotated[float, Meta(gt=0, description="Volts per unit of battery_voltage.")] = (
        1.0
    )
    signal_strength: Annotated[str, Meta(description="Field with the RSSI in dBm.")] | None = None
    link_quality: Annotated[str, Meta(description="Field with the link quality.")] | None = None
    link_quality_max: Annotated[float, Meta(gt=0, description="link_quality's full scale (100 %).")] = 100.0


def _contract_range(field: str) -> tuple[float, float]:
    rules = (
        reading_pb2.LinkHealthPayload.DESCRIPTOR.fields_by_name[field]
        .GetOptions()
        .Extensions[validate_pb2.field]
    )
    return rules.float.gte, rules.float.lte


# LinkHealthPayload field -> (LinkFields option naming the source field, the contract's range).
_LINK_FIELDS = {
    name: (option, _contract_range(name))
    for name, option in (
        ("battery_level_percent", "battery_level"),
        ("battery_voltage_volts", "battery_voltage"),
        ("signal_strength_dbm", "signal_strength"),
        ("link_quality_percent", "link_quality"),
    )
}


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one MQTT subscription set; the broker's (gateway_agent/mqtt_broker.py) are
    written in the same table."""

    flattened: ClassVar[dict[str, type[Options]]] = {"broker": BrokerSettings}

    broker: BrokerSettings = field(default_factory=BrokerSettings)
    topics: Annotated[list[str], Meta(min_length=1)]
    qos: Annotated[int, Meta(ge=0, le=2)] = 1
    measurement: str = ""
    units: dict[str, str] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    time_field: str | None = None
    link: LinkFields | None = None


def measurement_name(text: str) -> str | None:
    """`text` as a valid measurement name, or None if nothing usable remains."""
    name = _NAME_FORBIDDEN.sub("_", text.strip().lower())[:64]
    return name if name and name[0].isalpha() else None


def _numeric_fields(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in obj.items():
        if isinstance(value, bool):
            yield prefix + key, 1.0 if value else 0.0
        elif isinstance(value, int | float) and math.isfinite(value):
            yield prefix + key, float(value)
        elif isinstance(value, dict):
            yield from _numeric_fields(value, f"{prefix}{key}.")


def _sample_time(obj: dict[str, Any], field: str | None, received_ns: int) -> int:
    value = obj.get(field) if field else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1_000_000) if value > 1e11 else int(value * 1e9)  # epoch ms or s
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            log.warning("event=mqtt_time_unparsed field=%s value=%r", field, value)
    return received_ns


def _link_reading(
    topic: str, sensor: str, sample_time: int, fields: dict[str, float], mapping: LinkFields
) -> Reading | None:
    """The link-health reading of the fields `mapping` names (taken out of `fields`), if any."""
    values: dict[str, float] = {}
    for name, (option, (lo, hi)) in _LINK_FIELDS.items():
        source = getattr(mapping, option)
        if source is None or source not in fields:
            continue
        value = fields.pop(source)
        if name == "battery_voltage_volts":
            value *= mapping.battery_voltage_scale
        elif name == "link_quality_percent":
            value = value / mapping.link_quality_max * 100
        if lo <= value <= hi:
            values[name] = value
        else:
            log.warning("event=mqtt_field_skipped topic=%s field=%s reason=outside_%g_to_%g value=%g",
                        topic, source, lo, hi, value)  # fmt: skip
    return link_health(sensor, sample_time, **values) if values else None


def payload_readings(topic: str, payload: bytes, received_ns: int, settings: Settings) -> list[Reading]:
    """The readings one message carries (see the module doc); [] with a warning if none."""
    sensor = sensor_name(f"mqtt:{topic}")
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        fields: dict[str, float] = {settings.measurement or topic.rsplit("/", 1)[-1]: float(parsed)}
        sample_time = received_ns
    elif isinstance(parsed, dict):
        fields = dict(_numeric_fields(parsed))
        sample_time = _sample_time(parsed, settings.time_field, received_ns)
        if settings.time_field:
            fields.pop(settings.time_field, None)
    else:
        log.warning(
            "event=mqtt_payload_skipped topic=%s reason=not_a_number_or_json_object payload=%r",
            topic,
            text[:80],
        )
        return []
    link = None
    if settings.link is not None and isinstance(parsed, dict):  # by the payload's own names
        link = _link_reading(topic, sensor, sample_time, fields, settings.link)
    fields = {settings.rename.get(key, key): value for key, value in fields.items()}
    readings = []
    if "temperature" in fields:
        humidity = fields.pop("relative_humidity", fields.pop("humidity", None))
        readings.append(
            environment(
                sensor, sample_time, fields.pop("temperature"), humidity, fields.pop("pressure", None)
            )
        )
    for key, value in fields.items():
        name = measurement_name(key)
        if name is None or name in RESERVED or not math.isfinite(value):
            log.warning("event=mqtt_field_skipped topic=%s field=%s reason=%s", topic, key,
                        "reserved_quantity_name_rename_it" if name in RESERVED else "unusable_name_or_value")  # fmt: skip
            continue
        readings.append(measurement(sensor, sample_time, name, value, settings.units.get(name, "")))
    if link is not None:
        readings.append(link)
    return readings


class Mqtt:
    """Subscribes and emits readings until the broker connection fails."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.name or f"mqtt-{settings.broker.host}-{settings.broker.port}"[:64]

    async def stream(self, emit: Emit) -> None:
        s = self.settings
        async with client(s.broker, sensor_name(f"sensormesh-agent-{self.name}")) as broker:
            for topic in s.topics:
                await broker.subscribe(topic, qos=s.qos)
            log.info("event=mqtt_subscribed input=%s topics=%s", self.name, ",".join(s.topics))
            emit([])  # subscribed: the input is healthy even before the first message
            async for message in broker.messages:
                payload = (
                    message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                )
                readings = payload_readings(str(message.topic), payload, now_ns(), s)
                if readings:
                    emit(readings)


def create(settings: Settings) -> Mqtt:
    return Mqtt(settings)
