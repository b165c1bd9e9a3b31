"""A command's whole life through the real services: sent, offered, delivered, answered."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sensormesh.v1 import command_pb2, command_pb2_grpc

from tests.control_service.commands_api import get, send
from tests.control_service.conftest import Device
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage

S = command_pb2


async def test_a_command_is_offered_delivered_and_its_result_stored(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    sent = await send(commands_stub, device.device_id, "set_interval", input="imu", seconds=0.5)
    assert sent.state == S.COMMAND_STATE_QUEUED
    assert sent.creator == "key:test-admin"

    offered = await connected.expect("command")
    assert (offered.command_id, offered.name) == (sent.command_id, "set_interval")
    assert dict(offered.parameters) == {"input": "imu", "seconds": 0.5}
    assert offered.state == S.COMMAND_STATE_SENT

    connected.receipt(sent.command_id)
    run = await connected.expect("run")
    assert run.command_id == sent.command_id
    connected.result(sent.command_id, interval_seconds=0.5)
    stored = await connected.expect("result_stored")
    assert stored.command_id == sent.command_id

    got = await get(commands_stub, device.device_id, sent.command_id)
    assert got.state == S.COMMAND_STATE_SUCCEEDED
    assert dict(got.result) == {"interval_seconds": 0.5}
    assert got.create_time.ToDatetime() <= got.send_time.ToDatetime() <= got.deliver_time.ToDatetime()
    assert got.deliver_time.ToDatetime() <= got.finish_time.ToDatetime()
    assert got.delivery_count == 1


async def test_watching_one_command_follows_it_to_its_end(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    sent = await send(commands_stub, device.device_id, "ping")
    watch = commands_stub.WatchCommands(
        S.WatchCommandsRequest(device_id=device.device_id, command_id=sent.command_id)
    )
    seen: list[int] = []
    first = asyncio.Event()

    async def follow() -> None:
        async for change in watch:
            if change.HasField("command"):
                seen.append(change.command.state)
                first.set()

    follower = asyncio.create_task(follow())
    offered = await connected.expect("command")
    # The watch opens with the state as it is then: let it answer before the receipt moves it on.
    await asyncio.wait_for(first.wait(), 10)
    connected.receipt(offered.command_id)
    await connected.expect("run")
    connected.result(offered.command_id, succeeded=False, error="no such sensor")
    await connected.expect("result_stored")
    await asyncio.wait_for(follower, 10)  # the stream ends after the final state
    assert seen[0] in (S.COMMAND_STATE_QUEUED, S.COMMAND_STATE_SENT)
    assert seen[-1] == S.COMMAND_STATE_FAILED
    assert seen == sorted(seen)


async def test_a_device_that_never_connected_cannot_be_sent_commands(
    commands_stub: command_pb2_grpc.CommandServiceStub, device: Device
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(commands_stub, device.device_id, "ping")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "never opened the command channel" in (raised.value.details() or "")


async def test_commands_queued_while_the_device_was_away_arrive_in_order_on_reconnect(
    commands_stub: command_pb2_grpc.CommandServiceStub, device_channel: grpc.aio.Channel, device: Device
) -> None:
    first = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await first.expect("opened")
    first.cancel()  # the device goes away
    sent = [await send(commands_stub, device.device_id, "ping") for _ in range(5)]
    assert {c.state for c in sent} == {S.COMMAND_STATE_QUEUED}

    back = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await back.expect("opened")
    offered = [(await back.expect("command")).command_id for _ in range(5)]
    assert offered == [c.command_id for c in sent]
    back.cancel()


async def test_an_offer_not_confirmed_is_offered_again_after_a_reconnect_and_counted(
    commands_stub: command_pb2_grpc.CommandServiceStub, device_channel: grpc.aio.Channel, device: Device
) -> None:
    first = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await first.expect("opened")
    sent = await send(commands_stub, device.device_id, "ping")
    assert (await first.expect("command")).delivery_count == 1
    first.cancel()  # lost before the receipt
    back = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await back.expect("opened")
    again = await back.expect("command")
    assert (again.command_id, again.delivery_count) == (sent.command_id, 2)
    back.receipt(sent.command_id)
    await back.expect("run")
    back.cancel()
    # Delivered but not answered: offered once more, unchanged; the receipt is answered with run again.
    last = await DeviceChannel.open(device_channel, device.device_id, device.token)
    await last.expect("opened")
    offered = await last.expect("command")
    assert (offered.state, offered.delivery_count) == (S.COMMAND_STATE_DELIVERED, 2)
    last.receipt(sent.command_id)
    await last.expect("run")
    last.result(sent.command_id, agent_time="now")
    await last.expect("result_stored")
    assert (await get(commands_stub, device.device_id, sent.command_id)).state == S.COMMAND_STATE_SUCCEEDED
    last.cancel()


async def test_a_command_sent_through_one_replica_reaches_a_device_on_another(
    database_url: str, device: Device, operator_key: str
) -> None:
    from sensormesh.v1 import command_pb2_grpc as grpc_stubs

    from control_service.server import start_control_server
    from ingest_service.server import start
    from sensormesh_cli.bearer import aio_interceptors
    from tests.control_service.conftest import control_settings, ingest_settings

    controls = [
        await start_control_server(control_settings(database_url), database_url=database_url)
        for _ in range(2)
    ]
    ingests = [await start(ingest_settings(database_url)) for _ in range(2)]
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingests[1].port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{controls[0].port}", interceptors=aio_interceptors(operator_key)
            ) as to_control,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{controls[1].port}", interceptors=aio_interceptors(operator_key)
            ) as to_other_control,
        ):
            connected = await DeviceChannel.open(to_ingest, device.device_id, device.token)
            await connected.expect("opened")
            stub = grpc_stubs.CommandServiceStub(to_control)
            sent = await send(stub, device.device_id, "ping")
            watch = grpc_stubs.CommandServiceStub(to_other_control).WatchCommands(
                S.WatchCommandsRequest(device_id=device.device_id, command_id=sent.command_id)
            )
            offered = await connected.expect("command", within=5)
            assert offered.command_id == sent.command_id
            connected.receipt(sent.command_id)
            await connected.expect("run")
            connected.result(sent.command_id)
            await connected.expect("result_stored")
            states = [m.command.state async for m in watch if m.HasField("command")]
            assert states[-1] == S.COMMAND_STATE_SUCCEEDED
            connected.cancel()
    finally:
        for server in (*ingests, *controls):
            await server.stop(0.5)
