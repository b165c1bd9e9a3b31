"""One device's command channel: the hello, then offers out, receipts and results in.

The exchange (proto/sensormesh/v1/command_delivery.proto) keeps a command's
row the single truth. Offers come from the database, never from memory: at
the start every unfinished command of the device (so commands queued while it
was away arrive, in order), then whatever a command signal announces. Each
receipt and result is one conditional UPDATE, so a receipt racing a cancel on
another replica gets exactly one winner, and the device is told which: run
it (DELIVERED) or not (withdrawn).

Two tasks feed one outgoing queue: the reader (receipts and results, in the
order the device sends them) and the offerer. An error in either ends the
stream with its status; the device reconnects and nothing is lost, because
nothing here is only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeAlias, TypeVar

from sensormesh.v1 import command_delivery_pb2 as pb

from ingest_service.app import IngestApp
from ingest_service.command_channels import CommandChannels
from sensormesh_core.access.principal import Principal
from sensormesh_core.command_messages import command_message
from sensormesh_core.command_parameters import as_dict
from sensormesh_core.command_states import DELIVERED, STATE_NAMES
from sensormesh_core.command_telemetry import CommandMetrics, parent_context
from sensormesh_core.errors import FieldViolation, InvalidArgument, Unavailable
from sensormesh_core.storage import command_offers, commands
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS
from sensormesh_core.validation import validate

log = logging.getLogger(__name__)
T = TypeVar("T")

Outgoing: TypeAlias = "asyncio.Queue[pb.ConnectCommandsResponse | BaseException | None]"
MAX_RESULT_BYTES = 64 * 1024
OFFER_BATCH = 100


class CommandSession:
    """Serves one ConnectCommands stream for the device `owner` authenticated as."""

    def __init__(
        self,
        app: IngestApp,
        channels: CommandChannels,
        metrics: CommandMetrics,
        owner: Principal,
        *,
        poll_interval: float,
        heartbeat_interval: float,
    ) -> None:
        self._app = app
        self._channels = channels
        self._metrics = metrics
        self._owner = owner
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._offered: set[int] = set()
        self._device_id = owner.device_id

    async def run(
        self, requests: AsyncIterator[pb.ConnectCommandsRequest]
    ) -> AsyncIterator[pb.ConnectCommandsResponse]:
        hello = await self._hello(requests)
        yield pb.ConnectCommandsResponse(opened=pb.CommandChannelOpened(command_count=len(hello.commands)))
        out: Outgoing = asyncio.Queue()
        with self._channels.register(self._device_id) as wake:
            tasks = [
                asyncio.create_task(self._guard(self._read(requests, out), out), name="command-reader"),
                asyncio.create_task(self._guard(self._offer(wake, out), out), name="command-offerer"),
            ]
            try:
                while (item := await self._next(out)) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        log.info("event=command_channel_closed device_id=%s", self._device_id)

    async def _next(self, out: Outgoing) -> pb.ConnectCommandsResponse | BaseException | None:
        """The next message to send; a heartbeat when nothing came for the heartbeat interval."""
        try:
            return await asyncio.wait_for(out.get(), self._heartbeat_interval)
        except TimeoutError:
            return pb.ConnectCommandsResponse(heartbeat=pb.CommandChannelHeartbeat())

    async def _hello(self, requests: AsyncIterator[pb.ConnectCommandsRequest]) -> pb.CommandChannelHello:
        """Take the first message: who the device is and what it understands."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidArgument(
                "the first message of a command channel is a hello",
                [FieldViolation("hello", "required as the first message")],
            )
        validate(first)
        hello = first.hello
        self._app.auth.authorize(self._owner, hello.device_id)
        _check_unique(hello)
        await self._database(self._advertise(hello))
        log.info(
            "event=command_channel_opened device_id=%s commands=%s agent_version=%s",
            self._device_id,
            ",".join(spec.name for spec in hello.commands),
            hello.agent_version,
        )
        return hello

    async def _advertise(self, hello: pb.CommandChannelHello) -> None:
        async with self._app.pool.acquire() as conn:
            await command_offers.advertise(conn, self._device_id, list(hello.commands))

    @staticmethod
    async def _guard(work: Awaitable[None], out: Outgoing) -> None:
        """Run `work`; its error ends the stream."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            out.put_nowait(exc)

    async def _database(self, work: Awaitable[T]) -> T:
        """Await `work`, reporting an outage as UNAVAILABLE (the device reconnects later)."""
        try:
            return await work
        except RETRYABLE_DATABASE_ERRORS as exc:
            log.warning(
                "event=command_channel_database_unavailable device_id=%s error=%r", self._device_id, exc
            )
            raise Unavailable("the database is unavailable; reconnect the command channel later") from exc

    async def _read(self, requests: AsyncIterator[pb.ConnectCommandsRequest], out: Outgoing) -> None:
        async for request in requests:
            validate(request)
            kind = request.WhichOneof("message")
            if kind == "receipt":
                out.put_nowait(await self._database(self._receipt(request.receipt.command_id)))
            elif kind == "result":
                out.put_nowait(await self._database(self._result(request.result)))
            else:
                raise InvalidArgument(
                    f"a command channel takes one hello, first; got {kind or 'an empty message'} later",
                    [FieldViolation(kind or "message", "not allowed here")],
                )
        out.put_nowait(None)

    async def _receipt(self, command_id: int) -> pb.ConnectCommandsResponse:
        async with self._app.pool.acquire() as conn:
            record, changed = await command_offers.confirm_receipt(conn, self._device_id, command_id)
        with self._span("command delivered", record):
            if record.state == DELIVERED:
                if changed and record.deliver_time is not None:
                    self._metrics.delivered(record.create_time, record.deliver_time)
                log.info("event=command_delivered device_id=%s command_id=%d", self._device_id, command_id)
                return pb.ConnectCommandsResponse(run=pb.CommandRun(command_id=command_id))
        self._offered.discard(command_id)
        if changed and record.finish_time is not None:
            self._metrics.transition(record.state)
        log.info(
            "event=command_withdrawn device_id=%s command_id=%d state=%s",
            self._device_id,
            command_id,
            record.state_name,
        )
        return pb.ConnectCommandsResponse(
            withdrawal=pb.CommandWithdrawal(command_id=command_id, state=record.state)  # type: ignore[arg-type]
        )

    async def _result(self, result: pb.CommandResult) -> pb.ConnectCommandsResponse:
        values: dict[str, object] | None = as_dict(result.result) if result.HasField("result") else None
        succeeded, error = result.succeeded, result.error_message
        size = result.result.ByteSize()
        if size > MAX_RESULT_BYTES:
            values, succeeded = None, False
            error = (
                f"the device's result was {size:,} bytes, over the limit of {MAX_RESULT_BYTES:,}; not stored"
            )
        async with self._app.pool.acquire() as conn:
            record, changed = await command_offers.store_result(
                conn,
                self._device_id,
                result.command_id,
                succeeded=succeeded,
                result=values,
                error_message=error,
            )
        with self._span("command result", record):
            if changed and record.finish_time is not None:
                self._metrics.finished(record.state, record.create_time, record.finish_time)
        self._offered.discard(result.command_id)
        log.info(
            "event=command_result device_id=%s command_id=%d state=%s",
            self._device_id,
            result.command_id,
            record.state_name,
        )
        return pb.ConnectCommandsResponse(result_stored=pb.CommandResultStored(command_id=result.command_id))

    async def _offer(self, wake: asyncio.Event, out: Outgoing) -> None:
        """Offer the device's unfinished commands, then each new one as its signal arrives
        (and every `poll_interval` regardless, in case a signal was lost)."""
        while True:
            wake.clear()
            records = await self._database(self._next_offers())
            for record in records:
                self._offered.add(record.command_id)
                with self._span("command offered", record):
                    if record.state != DELIVERED:
                        self._metrics.transition(record.state)
                out.put_nowait(pb.ConnectCommandsResponse(command=command_message(record)))
                log.info(
                    "event=command_offered device_id=%s command_id=%d name=%s delivery_count=%d",
                    self._device_id,
                    record.command_id,
                    record.name,
                    record.delivery_count,
                )
            if len(records) == OFFER_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._poll_interval)

    async def _next_offers(self) -> list[commands.CommandRecord]:
        async with self._app.pool.acquire() as conn:
            return await command_offers.offers(conn, self._device_id, sorted(self._offered), OFFER_BATCH)

    @contextlib.contextmanager
    def _span(self, name: str, record: commands.CommandRecord) -> Iterator[None]:
        """A span of the command's trace (the one SendCommand started)."""
        attributes: dict[str, str | int] = {
            "sensormesh.device_id": record.device_id,
            "sensormesh.command_id": record.command_id,
            "sensormesh.command": record.name,
            "sensormesh.command_state": STATE_NAMES.get(record.state, ""),
        }
        with self._app.tracer.start_as_current_span(
            name, context=parent_context(record.trace_context), attributes=attributes
        ):
            yield


def _check_unique(hello: pb.CommandChannelHello) -> None:
    """Command names, and each command's parameter names, are unique (the contract says so;
    protovalidate cannot say it of repeated messages)."""
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for index, spec in enumerate(hello.commands):
        if spec.name in seen:
            violations.append(
                FieldViolation(f"hello.commands[{index}].name", f"{spec.name!r} is declared twice")
            )
        seen.add(spec.name)
        names: set[str] = set()
        for position, parameter in enumerate(spec.parameters):
            if parameter.name in names:
                violations.append(
                    FieldViolation(
                        f"hello.commands[{index}].parameters[{position}].name",
                        f"{parameter.name!r} is declared twice",
                    )
                )
            names.add(parameter.name)
    if violations:
        raise InvalidArgument("invalid hello: " + ", ".join(v.field for v in violations), violations)
