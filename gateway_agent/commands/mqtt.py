"""Commands to MQTT devices behind the agent: publish the parameters, optionally wait for a reply.

For Zigbee2MQTT devices, ESPHome nodes, Tasmota plugs: the command's
parameters are published to `topic` as one JSON object (`{}` without
parameters). With `reply_topic` set, the agent subscribes to it BEFORE
publishing (a fast device cannot answer before anyone listens), and the first
message that arrives there, not retained (a retained message is an old
answer) and not on `topic` itself (a wildcard may catch the command), is the reply: parsed as JSON when it is JSON, else kept as text.
No reply within `reply_timeout` is a failure. Each run opens its own
connection to the broker and closes it after.

Result: `{"published": topic}`, plus `"reply"` and `"reply_topic"` (the topic
it came on, which may differ when `reply_topic` has wildcards).

Sample config:

    [[commands.mqtt]]
      name = "pump-plug"
      description = "Switch the Zigbee plug of the pump (through Zigbee2MQTT)."
      ## The broker, as for [[inputs.mqtt]].
      # host = "127.0.0.1"
      # port = 1883
      # username = ""
      # password = ""
      # tls = false
      ## MQTT client id; default: one the broker library makes up.
      # client_id = ""
      ## Where the parameters are published (no wildcards), with this QoS (0, 1 or 2).
      topic = "zigbee2mqtt/pump-plug/set"
      # qos = 1
      ## Publish as retained (the broker keeps it for devices that connect later).
      # retain = false
      ## Wait for the first message here (wildcards + and # allowed); unset: do not wait.
      reply_topic = "zigbee2mqtt/pump-plug"
      # reply_timeout = "5s"
      [[commands.mqtt.parameters]]
        name = "state"
        required = true
        allowed_values = ["ON", "OFF", "TOGGLE"]
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta
from sensormesh.v1.command_delivery_pb2 import CommandSpec

from gateway_agent.commands.base import CommandFailed, CommandHandler
from gateway_agent.commands.settings import DeclaredCommand
from gateway_agent.durations import Duration
from gateway_agent.mqtt_broker import BrokerSettings, client
from gateway_agent.options import Options


class Settings(DeclaredCommand, kw_only=True, frozen=True):
    """One `[[commands.mqtt]]` table; the broker's options (gateway_agent/mqtt_broker.py) are
    written in the same table."""

    flattened: ClassVar[dict[str, type[Options]]] = {"broker": BrokerSettings}

    broker: BrokerSettings = msgspec.field(default_factory=BrokerSettings)
    topic: Annotated[
        str, Meta(min_length=1, max_length=65535, description="Where the parameters are published.")
    ]
    qos: Annotated[int, Meta(ge=0, le=2, description="QoS of the publish and the reply subscription.")] = 1
    retain: Annotated[bool, Meta(description="Publish as retained.")] = False
    reply_topic: Annotated[str, Meta(min_length=1, description="Wait for a reply here.")] | None = None
    reply_timeout: Annotated[Duration, Meta(description="How long to wait for it.")] = Duration(seconds=5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if "+" in self.topic or "#" in self.topic:
            raise ValueError("topic: a topic to publish to has no wildcards (+ or #)")
        if self.reply_timeout <= timedelta(0):
            raise ValueError("reply_timeout must be more than 0")


def _reply(payload: Any) -> Any:
    text = (
        payload.decode("utf-8", errors="replace") if isinstance(payload, bytes | bytearray) else str(payload)
    )
    try:
        return json.loads(text)
    except ValueError:
        return text


class MqttCommand:
    """Publishes the parameters; waits for the reply when configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec: CommandSpec = settings.spec()

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        import aiomqtt

        s = self.settings
        try:
            async with client(s.broker) as broker:
                if s.reply_topic is not None:
                    await broker.subscribe(s.reply_topic, qos=s.qos)
                await broker.publish(s.topic, json.dumps(parameters), qos=s.qos, retain=s.retain)
                if s.reply_topic is None:
                    return {"published": s.topic}
                return await self._wait_reply(broker, s.reply_topic)
        except aiomqtt.MqttError as error:
            raise CommandFailed(f"MQTT broker {s.broker.host}:{s.broker.port}: {error}") from error

    async def _wait_reply(self, broker: Any, reply_topic: str) -> dict[str, Any]:
        limit_s = self.settings.reply_timeout.total_seconds()
        try:
            async with asyncio.timeout(limit_s):
                async for message in broker.messages:
                    own = message.topic.value == self.settings.topic  # a wildcard catching our publish
                    if message.retain or own or not message.topic.matches(reply_topic):
                        continue
                    return {
                        "published": self.settings.topic,
                        "reply": _reply(message.payload),
                        "reply_topic": str(message.topic),
                    }
        except TimeoutError:
            pass
        raise CommandFailed(
            f"published to {self.settings.topic}; no reply on {reply_topic} within {limit_s:g} s",
            {"published": self.settings.topic},
        )


def create(settings: Sequence[Settings]) -> list[CommandHandler]:
    return [MqttCommand(s) for s in settings]
