"""A device's command channel driven by hand: the raw ConnectCommands stream, message by message.

Tests of the services play the device with it (every step of the exchange at
the test's pace); the agent's own tests use the real agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from sensormesh.v1 import command_delivery_pb2 as pb
from sensormesh.v1 import command_delivery_pb2_grpc

from sensormesh_core.command_parameters import as_struct


def spec(name: str, *parameters: pb.CommandParameter, description: str = "") -> pb.CommandSpec:
    return pb.CommandSpec(name=name, description=description or f"the {name} command", parameters=parameters)


def parameter(name: str, kind: str = "STRING", **fields: Any) -> pb.CommandParameter:
    return pb.CommandParameter(name=name, type=getattr(pb, f"COMMAND_PARAMETER_TYPE_{kind}"), **fields)


PING = spec("ping")
SET_INTERVAL = spec(
    "set_interval",
    parameter("input", "STRING", required=True, allowed_values=["imu", "environment"]),
    parameter("seconds", "NUMBER", required=True, minimum=0.001, maximum=86400),
)


class DeviceChannel:
    """An open ConnectCommands stream; `await DeviceChannel.open(...)`, then send and receive."""

    def __init__(self, call: Any, outgoing: asyncio.Queue[pb.ConnectCommandsRequest | None]) -> None:
        self._call = call
        self._outgoing = outgoing
        # Reading pumps into a queue: a timed-out wait on `call.read()` itself would cancel the call.
        self._incoming: asyncio.Queue[pb.ConnectCommandsResponse | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for message in self._call:
                self._incoming.put_nowait(message)
        except grpc.aio.AioRpcError:
            pass  # how it ended is what `status()` reports
        finally:
            self._incoming.put_nowait(None)

    @classmethod
    async def open(
        cls,
        channel: grpc.aio.Channel,
        device_id: str,
        token: str,
        specs: Iterable[pb.CommandSpec] = (PING, SET_INTERVAL),
        *,
        hello_device_id: str | None = None,
    ) -> DeviceChannel:
        """Open the stream and, once the service has accepted it, send the hello (without waiting
        for its answer)."""
        outgoing: asyncio.Queue[pb.ConnectCommandsRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[pb.ConnectCommandsRequest]:
            while (message := await outgoing.get()) is not None:
                yield message

        stub = command_delivery_pb2_grpc.CommandDeliveryServiceStub(channel)
        call = stub.ConnectCommands(requests(), metadata=(("authorization", f"Bearer {token}"),))
        opened = cls(call, outgoing)
        # As the agent does: the hello after the call's headers, so a refusal keeps its status.
        await asyncio.wait_for(call.initial_metadata(), 10)
        hello = pb.CommandChannelHello(device_id=hello_device_id or device_id, commands=list(specs))
        opened.send(pb.ConnectCommandsRequest(hello=hello))
        return opened

    def send(self, message: pb.ConnectCommandsRequest) -> None:
        self._outgoing.put_nowait(message)

    def receipt(self, command_id: int) -> None:
        self.send(pb.ConnectCommandsRequest(receipt=pb.CommandReceipt(command_id=command_id)))

    def result(self, command_id: int, succeeded: bool = True, error: str = "", **values: Any) -> None:
        result = pb.CommandResult(command_id=command_id, succeeded=succeeded, error_message=error)
        if values:
            result.result.CopyFrom(as_struct(values))
        self.send(pb.ConnectCommandsRequest(result=result))

    async def next(self, within: float = 10.0) -> pb.ConnectCommandsResponse:
        """The next message from the service; fails after `within` seconds."""
        message = await asyncio.wait_for(self._incoming.get(), within)
        if message is None:
            self._incoming.put_nowait(None)
            raise AssertionError(f"the service ended the command channel: {await self._call.code()}")
        assert isinstance(message, pb.ConnectCommandsResponse)
        return message

    async def expect(self, kind: str, within: float = 10.0) -> Any:
        """The next message, which must be of `kind` (opened, command, run, withdrawal, result_stored)."""
        message = await self.next(within)
        assert message.WhichOneof("message") == kind, f"expected {kind}, got {message}"
        return getattr(message, kind)

    async def status(self) -> grpc.StatusCode:
        """How the stream ended (waits for it)."""
        return await self._call.code()  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the device's side (the service then ends the stream)."""
        self._outgoing.put_nowait(None)

    def cancel(self) -> None:
        """Drop the stream as a crashed device would."""
        self._call.cancel()
