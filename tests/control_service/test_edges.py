"""Cancelling, expiry, timeouts, repeated requests and other devices: every edge of the lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import grpc
import pytest
from sensormesh.v1 import command_pb2, command_pb2_grpc

from tests.control_service.commands_api import get, send
from tests.control_service.conftest import Device
from tests.support.command_device import DeviceChannel
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage

S = command_pb2


async def cancel(stub: command_pb2_grpc.CommandServiceStub, device_id: str, command_id: int) -> S.Command:
    request = S.CancelCommandRequest(device_id=device_id, command_id=command_id)
    return (await stub.CancelCommand(request)).command


async def test_a_queued_command_canceled_is_withdrawn_when_the_device_confirms_it_late(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    sent = await send(commands_stub, device.device_id, "ping")
    offered = await connected.expect("command")  # SENT: on its way
    canceled = await cancel(commands_stub, device.device_id, offered.command_id)
    assert canceled.state == S.COMMAND_STATE_CANCELED
    assert canceled.error_message == "canceled by key:test-admin"
    connected.receipt(sent.command_id)
    withdrawal = await connected.expect("withdrawal")
    assert (withdrawal.command_id, withdrawal.state) == (sent.command_id, S.COMMAND_STATE_CANCELED)
    again = await cancel(commands_stub, device.device_id, offered.command_id)  # changes nothing
    assert again.finish_time == canceled.finish_time


async def test_a_delivered_or_finished_command_cannot_be_canceled(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    sent = await send(commands_stub, device.device_id, "ping")
    await connected.expect("command")
    connected.receipt(sent.command_id)
    await connected.expect("run")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await cancel(commands_stub, device.device_id, sent.command_id)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "DELIVERED" in (raised.value.details() or "") or "SUCCEEDED" in (raised.value.details() or "")
        connected.result(sent.command_id)
        await connected.expect("result_stored")


async def test_a_command_not_delivered_in_time_expires(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    device_channel: grpc.aio.Channel,
    device: Device,
) -> None:
    opened = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await opened.expect("opened")
    opened.cancel()
    sent = await send(commands_stub, device.device_id, "ping", ttl=timedelta(seconds=1))

    async def expired() -> bool:
        return (await get(commands_stub, device.device_id, sent.command_id)).state == S.COMMAND_STATE_EXPIRED

    await wait_until(expired, within=5, what="the command expired")
    command = await get(commands_stub, device.device_id, sent.command_id)
    assert command.error_message == "expired before delivery"
    back = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await back.expect("opened")
    with pytest.raises(TimeoutError):
        await back.next(within=0.5)  # nothing is offered
    back.cancel()


async def test_an_offer_confirmed_after_its_expiry_is_withdrawn_and_expired(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    control: object,
) -> None:
    sent = await send(commands_stub, device.device_id, "ping", ttl=timedelta(seconds=1))
    await connected.expect("command")
    await asyncio.sleep(1.1)  # the expiry is the point of the test
    connected.receipt(sent.command_id)
    withdrawal = await connected.expect("withdrawal")
    assert withdrawal.state == S.COMMAND_STATE_EXPIRED


async def test_a_delivered_command_without_a_result_times_out_and_a_late_result_is_kept(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    sent = await send(commands_stub, device.device_id, "ping", result_timeout=timedelta(seconds=1))
    await connected.expect("command")
    connected.receipt(sent.command_id)
    await connected.expect("run")

    async def timed_out() -> bool:
        return (
            await get(commands_stub, device.device_id, sent.command_id)
        ).state == S.COMMAND_STATE_TIMED_OUT

    await wait_until(timed_out, within=5, what="the command timed out")
    assert (await get(commands_stub, device.device_id, sent.command_id)).error_message == (
        "no result within 1 s of delivery"
    )
    connected.result(sent.command_id, agent_time="late")
    await connected.expect("result_stored")
    late = await get(commands_stub, device.device_id, sent.command_id)
    assert late.state == S.COMMAND_STATE_TIMED_OUT
    assert dict(late.result) == {"agent_time": "late"}
    assert late.error_message == "result arrived after the timeout: succeeded"


async def test_a_repeated_request_id_returns_the_first_command(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    first = await send(commands_stub, device.device_id, "ping", request_id="3f1c-retry")
    second = await send(commands_stub, device.device_id, "ping", request_id="3f1c-retry")
    assert second.command_id == first.command_id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(
            commands_stub, device.device_id, "set_interval", request_id="3f1c-retry", input="imu", seconds=1
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    offered = await connected.expect("command")
    assert offered.command_id == first.command_id
    with pytest.raises(TimeoutError):
        await connected.next(within=0.3)  # and only once


async def test_a_device_neither_receives_nor_answers_another_devices_commands(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    device_channel: grpc.aio.Channel,
    register: Callable[[str], Awaitable[Device]],
) -> None:
    other = await register("vibration-pi")
    theirs = await DeviceChannel.open(device_channel, other.device_id, other.token)
    await theirs.expect("opened")
    sent = await send(commands_stub, device.device_id, "ping")
    assert (await connected.expect("command")).command_id == sent.command_id
    with pytest.raises(TimeoutError):
        await theirs.next(within=0.3)
    theirs.receipt(sent.command_id)
    assert await theirs.status() == grpc.StatusCode.PERMISSION_DENIED
    assert (await get(commands_stub, device.device_id, sent.command_id)).state == S.COMMAND_STATE_SENT

    answering = await DeviceChannel.open(device_channel, other.device_id, other.token)
    await answering.expect("opened")
    answering.result(sent.command_id)
    assert await answering.status() == grpc.StatusCode.PERMISSION_DENIED

    impostor = await DeviceChannel.open(
        device_channel, other.device_id, other.token, hello_device_id=device.device_id
    )
    assert await impostor.status() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_quiet_channel_hears_a_heartbeat(database_url: str, device: Device) -> None:
    from ingest_service.server import start
    from tests.control_service.conftest import ingest_settings

    server = await start(ingest_settings(database_url, ingest_command_heartbeat=timedelta(seconds=1)))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            opened = await DeviceChannel.open(channel, device.device_id, device.token)
            await opened.expect("opened")
            await opened.expect("heartbeat", within=3)
            await opened.expect("heartbeat", within=3)
            opened.cancel()
    finally:
        await server.stop(grace=1)


async def test_finished_commands_older_than_the_retention_are_deleted(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    from control_service.command_clock import CommandClock
    from sensormesh_core.command_telemetry import CommandMetrics
    from sensormesh_core.telemetry import configure_telemetry

    old = await send(commands_stub, device.device_id, "ping")
    kept = await send(commands_stub, device.device_id, "ping")
    for command in (old, kept):
        await cancel(commands_stub, device.device_id, command.command_id)
    await db.execute(
        "UPDATE commands SET finish_time = now() - interval '31 days' WHERE command_id = $1", old.command_id
    )
    metrics = CommandMetrics(configure_telemetry("test", set_global=False).meter("test"))
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as pool:
        await CommandClock(pool, metrics, interval=1.0, retention=timedelta(days=30)).tick()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get(commands_stub, device.device_id, old.command_id)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await get(commands_stub, device.device_id, kept.command_id)).state == S.COMMAND_STATE_CANCELED


async def test_sending_and_cancelling_are_audited_with_the_command_they_name(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    db: asyncpg.Connection,
) -> None:
    sent = await send(commands_stub, device.device_id, "ping")
    await cancel(commands_stub, device.device_id, sent.command_id)
    with pytest.raises(grpc.aio.AioRpcError):
        await send(commands_stub, device.device_id, "reboot")
    rows = await db.fetch("SELECT actor, method, resource, outcome FROM audit_events ORDER BY event_id")
    assert [tuple(r) for r in rows] == [
        (
            "key:test-admin",
            "sensormesh.v1.CommandService/SendCommand",
            f"devices/{device.device_id}/commands",
            "OK",
        ),
        (
            "key:test-admin",
            "sensormesh.v1.CommandService/CancelCommand",
            f"devices/{device.device_id}/commands/{sent.command_id}",
            "OK",
        ),
        (
            "key:test-admin",
            "sensormesh.v1.CommandService/SendCommand",
            f"devices/{device.device_id}/commands",
            "INVALID_ARGUMENT",
        ),
    ]
