"""Commands through the real Envoy: the operator over REST (what curl does), the device's command
channel over gRPC through the same listener."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest

from tests.envoy.conftest import Stack, register
from tests.envoy.json_stream import json_array_items
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage


async def test_send_read_back_list_and_cancel_over_rest(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-commands")
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        connected = await DeviceChannel.open(channel, device.device_id, device.token)
        await connected.expect("opened")

        sent = await http.post(
            f"/v1/devices/{device.device_id}/commands",
            json={"name": "set_interval", "parameters": {"input": "imu", "seconds": 0.5}, "ttl": "600s"},
        )
        assert sent.status_code == 200, sent.text
        command = sent.json()["command"]
        assert command["state"] == "COMMAND_STATE_QUEUED"
        command_id = command["commandId"]
        assert isinstance(command_id, str)  # 64-bit, as the JSON mapping says
        offered = await connected.expect("command")
        assert str(offered.command_id) == command_id
        connected.receipt(offered.command_id)
        await connected.expect("run")
        connected.result(offered.command_id, interval_seconds=0.5, previous_seconds=0.01)
        await connected.expect("result_stored")

        got = await http.get(f"/v1/devices/{device.device_id}/commands/{command_id}")
        assert got.status_code == 200
        body = got.json()["command"]
        assert body["state"] == "COMMAND_STATE_SUCCEEDED"
        assert body["result"] == {"interval_seconds": 0.5, "previous_seconds": 0.01}
        assert body["resultTimeout"] == "60s"

        listed = await http.get(
            f"/v1/devices/{device.device_id}/commands", params={"states": "COMMAND_STATE_SUCCEEDED"}
        )
        assert [c["commandId"] for c in listed.json()["commands"]] == [command_id]

        finished = await http.post(f"/v1/devices/{device.device_id}/commands/{command_id}:cancel", json={})
        assert finished.status_code == 400
        assert finished.json()["details"][0]["reason"] == "COMMAND_NOT_CANCELABLE"
        connected.cancel()


async def test_a_refused_command_is_400_naming_the_field(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-refused")
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        connected = await DeviceChannel.open(channel, device.device_id, device.token)
        await connected.expect("opened")
        refused = await http.post(
            f"/v1/devices/{device.device_id}/commands",
            json={"name": "set_interval", "parameters": {"seconds": "x"}},
        )
        assert refused.status_code == 400
        violations = {
            v["field"]: v["description"]
            for detail in refused.json()["details"]
            for v in detail.get("fieldViolations", [])
        }
        assert violations == {"parameters.input": "required", "parameters.seconds": "must be a number"}
        connected.cancel()


async def test_watching_over_rest_streams_the_changes(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-watch")
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        connected = await DeviceChannel.open(channel, device.device_id, device.token)
        await connected.expect("opened")
        command_id = (
            await http.post(f"/v1/devices/{device.device_id}/commands", json={"name": "ping"})
        ).json()["command"]["commandId"]

        async def answer() -> None:
            offered = await connected.expect("command")
            connected.receipt(offered.command_id)
            await connected.expect("run")
            connected.result(offered.command_id, agent_time="2026-12-05T00:00:00Z")
            await connected.expect("result_stored")

        answering = asyncio.create_task(answer())
        states = []
        path = f"/v1/devices/{device.device_id}/commands:watch"
        async with http.stream("GET", path, params={"commandId": command_id}) as response:
            assert response.status_code == 200
            async for item in json_array_items(response):
                if item.get("command"):
                    states.append(item["command"]["state"])
        await answering
        assert states[-1] == "COMMAND_STATE_SUCCEEDED"  # and then the stream ended
        connected.cancel()
