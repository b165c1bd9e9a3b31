"""`sensormesh commands` against real control and ingest processes, the device played by hand."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import grpc
import pytest

from sensormesh_cli.commands_command import parameters
from sensormesh_cli.main import main
from sensormesh_core.storage.registry import create_device
from tests.sensormesh_cli.conftest import Services
from tests.support.command_device import DeviceChannel

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


def _client(services: Services) -> list[str]:
    return ["--server", services.control, "--api-key-file", str(services.admin_key_file)]


async def _device(services: Services) -> tuple[str, str]:
    device_id = f"cli-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(services.database_url)
    try:
        _, token = await create_device(conn, device_id)
    finally:
        await conn.close()
    return device_id, token


def test_param_values_are_json_when_they_parse_and_text_otherwise() -> None:
    assert parameters(["seconds=0.5", "input=imu", "on=true", 'name="42"', "empty="]) == {
        "seconds": 0.5,
        "input": "imu",
        "on": True,
        "name": "42",
        "empty": "",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parameters(["seconds"])


async def test_send_wait_prints_the_states_and_the_round_trip(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    device_id, token = await _device(services)
    async with grpc.aio.insecure_channel(services.ingest) as channel:
        device = await DeviceChannel.open(channel, device_id, token)
        await device.expect("opened")
        argv = [
            "commands",
            "send",
            device_id,
            "set_interval",
            "--param",
            "input=imu",
            "--param",
            "seconds=0.02",
        ]
        sending = asyncio.create_task(asyncio.to_thread(main, [*argv, "--wait", *_client(services)]))
        offered = await device.expect("command")
        assert dict(offered.parameters) == {"input": "imu", "seconds": 0.02}
        device.receipt(offered.command_id)
        await device.expect("run")
        device.result(offered.command_id, interval_seconds=0.02)
        await device.expect("result_stored")
        assert await sending == 0
        device.cancel()
    out = capsys.readouterr().out
    assert f"command {offered.command_id} set_interval to {device_id}: QUEUED" in out
    # Each change seen, in lifecycle order (changes close together may arrive as one).
    states = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    order = ["SENT", "DELIVERED", "SUCCEEDED"]
    assert states == sorted(states, key=order.index) and states[-1] == "SUCCEEDED"
    assert "SUCCEEDED in " in out and " ms (delivered after " in out
    assert 'result {"interval_seconds": 0.02}' in out


async def test_list_show_cancel_and_a_refusal(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    device_id, token = await _device(services)
    async with grpc.aio.insecure_channel(services.ingest) as channel:
        device = await DeviceChannel.open(channel, device_id, token)
        await device.expect("opened")
        device.cancel()
    assert await asyncio.to_thread(main, ["commands", "send", device_id, "ping", *_client(services)]) == 0
    command_id = int(capsys.readouterr().out.split()[1])

    assert (
        await asyncio.to_thread(
            main, ["commands", "list", device_id, "--state", "queued", *_client(services)]
        )
        == 0
    )
    listing = capsys.readouterr().out
    row = next(line.split() for line in listing.splitlines() if line.startswith(f"{command_id} "))
    assert row[:4] == [str(command_id), device_id, "ping", "QUEUED"] and "1 command" in listing

    assert (
        await asyncio.to_thread(main, ["commands", "cancel", device_id, str(command_id), *_client(services)])
        == 0
    )
    assert capsys.readouterr().out.strip() == f"command {command_id}: CANCELED"
    show = ["commands", "show", device_id, str(command_id), "--json", *_client(services)]
    assert await asyncio.to_thread(main, show) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (
        shown["state"] == "COMMAND_STATE_CANCELED"
        and shown["errorMessage"] == "canceled by key:cli-tests-admin"
    )

    bad = ["commands", "send", device_id, "set_interval", "--param", "seconds=-1", *_client(services)]
    assert await asyncio.to_thread(main, bad) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "parameters.seconds: must be at least 0.001" in err
    assert "parameters.input: required" in err
