"""A test double of CommandDeliveryService: the command channel's contract, in memory.

It follows proto/sensormesh/v1/command_delivery.proto as the agent relies on it:
bearer token per device, a hello first (answered `opened`), pending commands
offered in id order on connect (QUEUED/SENT -> SENT, counted as deliveries),
a receipt answered with `run` (-> DELIVERED) or, for a command that ended
meanwhile, `withdrawal`; a result stored (-> SUCCEEDED/FAILED) and answered
`result_stored`. Tests steer it: `send`, `cancel`, `offer` (offer again, as a
racing replica might), `drop` (end the stream UNAVAILABLE), `refuse` (answer new
streams with a code), and `on_request`, called before each device message, which
may return False to lose it. It stands in until the real service is on this
branch; `serve` can serve the ingest double beside it on one port, as ingest does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from sensormesh.v1 import command_delivery_pb2 as delivery
from sensormesh.v1 import command_delivery_pb2_grpc, ingest_pb2_grpc
from sensormesh.v1.command_pb2 import Command, CommandState

from sensormesh_core.command_parameters import as_dict, as_struct

FINAL = {
    CommandState.COMMAND_STATE_SUCCEEDED, CommandState.COMMAND_STATE_FAILED, CommandState.COMMAND_STATE_EXPIRED,
    CommandState.COMMAND_STATE_TIMED_OUT, CommandState.COMMAND_STATE_CANCELED,
}  # fmt: skip
_DROP = object()


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Session:
    outgoing: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    opened: bool = False


@dataclass
class CommandDouble(command_delivery_pb2_grpc.CommandDeliveryServiceServicer):
    device_id: str
    token: str
    commands: dict[int, Command] = field(default_factory=dict)
    results: dict[int, list[delivery.CommandResult]] = field(default_factory=dict)
    receipts: dict[int, int] = field(default_factory=dict)
    hellos: list[delivery.CommandChannelHello] = field(default_factory=list)
    received: list[delivery.ConnectCommandsRequest] = field(default_factory=list)  # every device message
    sessions: int = 0  # streams opened (hello answered)
    refuse: grpc.StatusCode | None = None
    on_request: Callable[[CommandDouble, delivery.ConnectCommandsRequest], Awaitable[bool]] | None = None
    _session: _Session | None = None
    _next_id: int = 1

    # -- what tests do ----------------------------------------------------------------------------

    def send(self, name: str, parameters: dict[str, Any] | None = None, result_timeout_s: float = 0.0) -> int:
        """Store a command QUEUED and offer it at once if the device is connected; returns its id."""
        command_id, self._next_id = self._next_id, self._next_id + 1
        timeout = Duration()
        timeout.FromNanoseconds(int(result_timeout_s * 1e9))
        self.commands[command_id] = Command(
            command_id=command_id, device_id=self.device_id, name=name, parameters=as_struct(parameters or {}),
            state=CommandState.COMMAND_STATE_QUEUED, result_timeout=timeout,
        )  # fmt: skip
        if self._session is not None and self._session.opened:
            self._offer(self._session, command_id)
        return command_id

    def add(self, name: str, state: CommandState, parameters: dict[str, Any] | None = None) -> int:
        """Store a command already in `state` (as a previous session left it); not offered."""
        assert not self.connected, "add() sets up what a previous session left, before the device connects"
        command_id = self.send(name, parameters)
        self.commands[command_id].state = state
        return command_id

    def cancel(self, command_id: int) -> None:
        command = self.commands[command_id]
        if command.state in (CommandState.COMMAND_STATE_QUEUED, CommandState.COMMAND_STATE_SENT):
            command.state = CommandState.COMMAND_STATE_CANCELED

    def offer(self, command_id: int) -> None:
        """Offer a command again on the open stream, whatever its state."""
        assert self._session is not None
        self._session.outgoing.put_nowait(delivery.ConnectCommandsResponse(command=self.commands[command_id]))

    def drop(self) -> None:
        """End the open stream with UNAVAILABLE, as a service that shuts down does."""
        if self._session is not None:
            self._session.outgoing.put_nowait(_DROP)

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.opened

    def state(self, command_id: int) -> CommandState:
        return self.commands[command_id].state

    def result(self, command_id: int) -> delivery.CommandResult | None:
        results = self.results.get(command_id)
        return results[-1] if results else None

    def result_dict(self, command_id: int) -> dict[str, Any]:
        result = self.result(command_id)
        assert result is not None
        return as_dict(result.result)

    # -- the contract -----------------------------------------------------------------------------

    def _offer(self, session: _Session, command_id: int) -> None:
        command = self.commands[command_id]
        command.state = CommandState.COMMAND_STATE_SENT
        command.delivery_count += 1
        session.outgoing.put_nowait(delivery.ConnectCommandsResponse(command=command))

    async def ConnectCommands(
        self,
        request_iterator: AsyncIterator[delivery.ConnectCommandsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[delivery.ConnectCommandsResponse]:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid device token")
        if self.refuse is not None:
            await context.abort(self.refuse, "refused by the test")
        await context.send_initial_metadata(())  # accepted: as the service does, headers first
        session = _Session()
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while True:
                get = asyncio.ensure_future(session.outgoing.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    try:
                        reader.result()
                    except _Refused as refused:
                        await context.abort(refused.code, str(refused))
                    return
                item = get.result()
                if item is _DROP:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the double dropped the stream")
                yield item
        finally:
            reader.cancel()
            if self._session is session:
                self._session = None

    async def _read(
        self, requests: AsyncIterator[delivery.ConnectCommandsRequest], session: _Session
    ) -> None:
        async for request in requests:
            self.received.append(request)
            if self.on_request is not None and not await self.on_request(self, request):
                continue
            kind = request.WhichOneof("message")
            if not session.opened:
                if kind != "hello":
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} before the hello")
                if request.hello.device_id != self.device_id:
                    raise _Refused(grpc.StatusCode.PERMISSION_DENIED, "the token is another device's")
                self._open(session, request.hello)
            elif kind == "receipt":
                self._on_receipt(session, request.receipt.command_id)
            elif kind == "result":
                self._on_result(session, request.result)

    def _open(self, session: _Session, hello: delivery.CommandChannelHello) -> None:
        self.hellos.append(hello)
        self.sessions += 1
        session.opened = True
        if self._session is not None:
            self._session.outgoing.put_nowait(_DROP)  # one stream per device: the newer wins
        self._session = session
        opened = delivery.CommandChannelOpened(command_count=len(hello.commands))
        session.outgoing.put_nowait(delivery.ConnectCommandsResponse(opened=opened))
        for command_id in sorted(self.commands):
            if self.commands[command_id].state in (
                CommandState.COMMAND_STATE_QUEUED,
                CommandState.COMMAND_STATE_SENT,
            ):
                self._offer(session, command_id)

    def _on_receipt(self, session: _Session, command_id: int) -> None:
        if command_id not in self.commands:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"command {command_id} is not this device's")
        self.receipts[command_id] = self.receipts.get(command_id, 0) + 1
        command = self.commands[command_id]
        if command.state in FINAL:
            withdrawal = delivery.CommandWithdrawal(command_id=command_id, state=command.state)
            session.outgoing.put_nowait(delivery.ConnectCommandsResponse(withdrawal=withdrawal))
            return
        command.state = CommandState.COMMAND_STATE_DELIVERED
        session.outgoing.put_nowait(
            delivery.ConnectCommandsResponse(run=delivery.CommandRun(command_id=command_id))
        )

    def _on_result(self, session: _Session, result: delivery.CommandResult) -> None:
        if result.command_id not in self.commands:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED, f"command {result.command_id} is not this device's"
            )
        self.results.setdefault(result.command_id, []).append(result)
        command = self.commands[result.command_id]
        if command.state == CommandState.COMMAND_STATE_DELIVERED:
            command.state = (
                CommandState.COMMAND_STATE_SUCCEEDED
                if result.succeeded
                else CommandState.COMMAND_STATE_FAILED
            )
            command.result.CopyFrom(result.result)
            command.error_message = result.error_message
        stored = delivery.CommandResultStored(command_id=result.command_id)
        session.outgoing.put_nowait(delivery.ConnectCommandsResponse(result_stored=stored))


async def serve(
    commands: CommandDouble, ingest: ingest_pb2_grpc.IngestServiceServicer | None = None, port: int = 0
) -> tuple[grpc.aio.Server, int]:
    """Serve the doubles on 127.0.0.1:`port` (0: a free one); returns the server and its port."""
    server = grpc.aio.server()
    command_delivery_pb2_grpc.add_CommandDeliveryServiceServicer_to_server(commands, server)
    if ingest is not None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound
