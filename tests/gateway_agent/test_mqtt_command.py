"""MQTT commands against a real Mosquitto: the parameters published as JSON, replies awaited."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from opentelemetry import trace

from gateway_agent.commands.base import CommandHandler
from gateway_agent.commands.builtins import BUILTIN_NAMES
from gateway_agent.commands.journal import Outcome
from gateway_agent.commands.runner import run_command
from gateway_agent.commands.settings import CommandsSettings
from gateway_agent.config import build_commands
from tests.gateway_agent.mosquitto import Broker, free_port

pytestmark = pytest.mark.timeout(60)
PARAMETERS = [
    {"name": "state", "required": True, "allowed_values": ["ON", "OFF"]},
    {"name": "brightness", "type": "integer", "minimum": 0, "maximum": 254},
]


def mqtt_command(broker: Broker, **table: Any) -> CommandHandler:
    tables = [{"name": "lamp", "host": broker.host, "port": broker.port, "parameters": PARAMETERS, **table}]
    [handler] = build_commands(CommandsSettings(mqtt=tables), BUILTIN_NAMES)
    return handler


async def run(handler: CommandHandler, parameters: dict[str, Any]) -> Outcome:
    return await run_command(handler, 1, handler.spec.name, parameters, 30, trace.NoOpTracer())


@contextlib.asynccontextmanager
async def device(
    broker: Broker, topic: str, reply_topic: str, answer: bytes | None
) -> AsyncIterator[list[Any]]:
    """A device on the broker: subscribed to `topic`, keeping what arrives, answering `answer`
    on `reply_topic` to each message."""
    received: list[Any] = []
    subscribed = asyncio.Event()

    async def serve() -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(topic, qos=1)
            subscribed.set()
            async for message in client.messages:
                received.append(json.loads(message.payload))  # type: ignore[arg-type]
                if answer is not None:
                    await client.publish(reply_topic, answer, qos=1)

    task = asyncio.create_task(serve())
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()
        yield received
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_parameters_are_published_as_one_json_object(broker: Broker, tmp_path: Path) -> None:
    topic = f"sensormesh-test/{tmp_path.name}/lamp/set"
    handler = mqtt_command(broker, topic=topic)
    assert [p.name for p in handler.spec.parameters] == ["state", "brightness"]
    async with device(broker, topic, "-", None) as received:
        outcome = await run(handler, {"state": "ON", "brightness": 40.0})
        async with asyncio.timeout(10):
            while not received:  # noqa: ASYNC110 (the broker delivers to another client)
                await asyncio.sleep(0.005)
    assert outcome == Outcome(True, {"published": topic}, "", outcome.finish_time_ns)
    assert received == [{"state": "ON", "brightness": 40}]


async def test_the_reply_is_awaited_and_a_retained_old_one_ignored(broker: Broker, tmp_path: Path) -> None:
    topic, reply_topic = f"sensormesh-test/{tmp_path.name}/lamp/set", f"sensormesh-test/{tmp_path.name}/lamp"
    async with aiomqtt.Client(broker.host, broker.port) as client:  # yesterday's state, retained
        await client.publish(reply_topic, b'{"state": "OFF", "stale": true}', qos=1, retain=True)
    try:
        handler = mqtt_command(broker, topic=topic, reply_topic=f"{reply_topic}/#", reply_timeout="5s")
        async with device(broker, topic, f"{reply_topic}/state", b'{"state": "ON", "brightness": 40}'):
            outcome = await run(handler, {"state": "ON"})
        text = mqtt_command(broker, topic=topic, reply_topic=reply_topic + "/text")
        async with device(broker, topic, f"{reply_topic}/text", b"OK, switched"):
            text_outcome = await run(text, {"state": "OFF"})
    finally:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(reply_topic, b"", qos=1, retain=True)  # clear the retained message
    assert outcome.succeeded, outcome.error
    assert outcome.result == {
        "published": topic, "reply": {"state": "ON", "brightness": 40}, "reply_topic": f"{reply_topic}/state",
    }  # fmt: skip
    assert text_outcome.result["reply"] == "OK, switched"


async def test_no_reply_in_time_fails_saying_so(broker: Broker, tmp_path: Path) -> None:
    topic = f"sensormesh-test/{tmp_path.name}/lamp/set"
    handler = mqtt_command(broker, topic=topic, reply_topic=f"{topic}/reply", reply_timeout="300ms")
    outcome = await run(handler, {"state": "ON"})
    assert not outcome.succeeded
    assert outcome.error == f"published to {topic}; no reply on {topic}/reply within 0.3 s"
    assert outcome.result == {"published": topic}


async def test_an_unreachable_broker_fails_naming_it(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    handler = mqtt_command(Broker("127.0.0.1", port, None), topic="lamp/set")
    outcome = await run(handler, {"state": "ON"})
    assert not outcome.succeeded
    assert outcome.error.startswith(f"MQTT broker 127.0.0.1:{port}: ")


def test_a_topic_with_wildcards_cannot_be_published_to() -> None:
    from gateway_agent.config import ConfigError

    with pytest.raises(ConfigError, match=r"commands\.mqtt\[0\]: topic: a topic to publish to"):
        build_commands(CommandsSettings(mqtt=[{"name": "x", "topic": "lamps/+/set"}]), BUILTIN_NAMES)
