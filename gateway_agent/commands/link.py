"""The command channel: the agent's end of CommandDeliveryService.ConnectCommands.

One long-lived bidirectional stream to the ingest service (the uplink's
target and gRPC channel), authenticated with the device token. Per session:

    agent -> hello (device, every handler's spec, agent version)
    service -> opened               then the agent sends every result not yet confirmed
    service -> command (offer)      journal: received, then -> receipt
    service -> run                  journal: running, run, journal: finished, then -> result
          or -> withdrawal          journal: withdrawn; never run
    service -> result_stored        journal: reported

The journal (journal.py) is written before each message it allows, so a
command runs at most once across crashes, reconnects and redelivery: an offer
of a known command is answered from the journal (receipt again while only
received; the stored result once finished; a run interrupted by a crash is
reported FAILED, never run again), and a `run` starts only a received command.

Commands run one at a time, in the order they are told to run, on one worker
task that outlives sessions: a command running when the stream drops finishes,
and its result goes out after the next `opened`.

Failures reconnect with backoff (reset once a session opens). A refusal of the
device (PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, as for the uplink:
gateway_agent/refusal.py) and a server without the service (UNIMPLEMENTED)
are retried on the slow schedule, logged once, and the token file is read
again before every retry. Nothing here stops the agent: an unexpected error is
logged and the link reconnects (or the worker takes the next command); a
command whose journal write failed is settled by its row at the next start.

Each step logs one line, `event=command_received|command_running|command_finished
command_id=...`, after the journal has it: what a test that kills the agent
at each step waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from opentelemetry import metrics, trace
from sensormesh.v1 import command_delivery_pb2 as delivery
from sensormesh.v1.command_delivery_pb2_grpc import CommandDeliveryServiceStub
from sensormesh.v1.command_pb2 import Command, CommandState

from gateway_agent.backoff import Backoff
from gateway_agent.commands.base import CommandHandler
from gateway_agent.commands.journal import CommandJournal, EntryState, JournalEntry, Outcome
from gateway_agent.commands.runner import run_command
from gateway_agent.commands.session import Session, result_message
from gateway_agent.refusal import RefusalWatch, is_refusal
from gateway_agent.token_source import TokenSource
from gateway_agent.uplink_settings import UplinkSettings
from sensormesh_core import __version__
from sensormesh_core.command_parameters import as_dict

log = logging.getLogger(__name__)

DEFAULT_RESULT_TIMEOUT_S = 60.0
"""A command's time to run when its result_timeout is 0 (the contract's default)."""
INTERRUPTED = "the agent restarted while the command ran; it may have run partly"
STOPPED = "the agent stopped while the command ran; it may have run partly"
STOP_REPORT_GRACE_S = 1.0
# How long the hello waits for the call's headers (a service that sends none until its first
# answer still gets the hello after this).
HEADERS_WAIT_S = 5.0
"""On stop, how long the last results have to be confirmed before the stream is closed."""


@dataclass(frozen=True)
class LinkTiming:
    """Reconnect schedules, in seconds: the uplink's (same server, same reasons)."""

    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    refused_backoff_initial: float = 10.0
    refused_backoff_max: float = 60.0

    @classmethod
    def like(cls, uplink: UplinkSettings) -> LinkTiming:
        return cls(
            uplink.backoff_initial.total_seconds(), uplink.backoff_max.total_seconds(),
            uplink.refused_backoff_initial.total_seconds(), uplink.refused_backoff_max.total_seconds(),
        )  # fmt: skip


@dataclass
class LinkCounters:
    """What the link has done since it started, for tests and logs."""

    sessions: int = 0  # sessions opened (an `opened` received)
    offers: int = 0
    receipts_sent: int = 0
    runs: int = 0  # handlers started
    results_sent: int = 0
    results_stored: int = 0
    withdrawals: int = 0


class _ProtocolError(Exception):
    """The service said something the contract does not allow at that point."""


class CommandLink:
    """The command channel of `device_id`; `await run()` until `stop()` (or cancellation)."""

    def __init__(
        self,
        device_id: str,
        token: TokenSource,
        channel: grpc.aio.Channel,
        journal: CommandJournal,
        handlers: Sequence[CommandHandler],
        tracer: trace.Tracer,
        meter: metrics.Meter,
        timing: LinkTiming | None = None,
    ) -> None:
        self.device_id = device_id
        self.handlers = {h.spec.name: h for h in handlers}
        self.journal = journal
        self.counters = LinkCounters()
        self.opened = asyncio.Event()
        self._token = token
        self._stub = CommandDeliveryServiceStub(channel)
        self._tracer = tracer
        self._ran = meter.create_counter(
            "sensormesh.agent.commands", unit="{command}", description="Commands run, by name and outcome."
        )
        timing = timing or LinkTiming()
        self._backoff = Backoff(timing.backoff_initial, timing.backoff_max)
        self._slow_backoff = Backoff(timing.refused_backoff_initial, timing.refused_backoff_max)
        self._refusals = RefusalWatch(device_id, "command_channel")
        self._unsupported = False
        self._runs: asyncio.Queue[int] = asyncio.Queue()
        self._active: set[int] = set()  # told to run here: queued or running
        self._idle = asyncio.Event()
        self._idle.set()
        self._session: Session | None = None
        self._stopping = asyncio.Event()
        self._token_in_use = token.token

    def hello(self) -> delivery.ConnectCommandsRequest:
        return delivery.ConnectCommandsRequest(
            hello=delivery.CommandChannelHello(
                device_id=self.device_id,
                commands=[h.spec for h in self.handlers.values()],
                agent_version=__version__,
            )
        )

    def stop(self) -> None:
        """Start no more commands; `run()` returns once the running one has finished and its
        result had a moment to be confirmed (bound the wait: a command may run long)."""
        self._stopping.set()

    async def run(self) -> None:
        for entry in await self.journal.recover_interrupted(INTERRUPTED):
            self._log_finished(entry.command_id, entry.name, entry.outcome or Outcome(False), 0.0)
        worker = asyncio.create_task(self._work(), name="command-worker")
        channel = asyncio.create_task(self._connect_forever(), name="command-channel")
        stop = asyncio.create_task(self._stopping.wait(), name="command-stop")
        tasks = (worker, channel, stop)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                task.result()  # a part that ended by itself failed: raise
            await self._idle.wait()
            await self._last_results_confirmed()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _last_results_confirmed(self) -> None:
        session = self._session
        if session is None or not session.unstored:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_REPORT_GRACE_S):
                while session.unstored:
                    session.stored.clear()
                    await session.stored.wait()

    # -- sessions --------------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        while True:
            try:
                await self._session_once()
                log.info("event=command_channel_closed device_id=%s", self.device_id)
            except grpc.aio.AioRpcError as error:
                await self._on_rpc_error(error)
            except _ProtocolError as error:
                log.warning(
                    "event=command_channel_protocol_error device_id=%s error=%r", self.device_id, str(error)
                )
            except sqlite3.Error:
                log.exception("event=command_journal_failed device_id=%s", self.device_id)
            except Exception:  # a bug here must not take the uploads down with it: log, reconnect
                log.exception("event=command_channel_failed device_id=%s", self.device_id)
            finally:
                self.opened.clear()
                self._session = None
            await self._wait_to_retry()

    async def _session_once(self) -> None:
        session = Session()
        self._session = session
        metadata = (("authorization", f"Bearer {self._token.token}"),)
        self._token_in_use = self._token.token
        call = self._stub.ConnectCommands(session.requests, metadata=metadata)
        try:
            # The service sends the call's headers once it has accepted the call; a refusal ends
            # the call before that. Writing the hello only then keeps the refusal's own status:
            # grpcio's asyncio client reports a write that races the server's status as INTERNAL
            # (grpc/grpc#36066), which would hide a disabled device behind a transient error.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.initial_metadata(), HEADERS_WAIT_S)
            session.send(self.hello())
            async for response in call:
                await self._handle(session, response)
        finally:
            session.requests.close()
            call.cancel()

    async def _handle(self, session: Session, response: delivery.ConnectCommandsResponse) -> None:
        kind = response.WhichOneof("message")
        if not session.opened:
            if kind != "opened":
                raise _ProtocolError(f"the first message was {kind!r}, not opened")
            await self._on_opened(session, response.opened)
        elif kind == "command":
            await self._on_offer(session, response.command)
        elif kind == "run":
            await self._on_run(session, response.run.command_id)
        elif kind == "withdrawal":
            await self._on_withdrawal(response.withdrawal)
        elif kind == "result_stored":
            await self._on_result_stored(session, response.result_stored.command_id)

    async def _on_opened(self, session: Session, opened: delivery.CommandChannelOpened) -> None:
        session.opened = True
        self.counters.sessions += 1
        self._backoff.reset()
        self._slow_backoff.reset()
        self._unsupported = False
        await self.journal.prune()  # here, not only at start: an agent may stay up for months
        pending = await self.journal.unreported()
        self._refusals.allow(buffered=len(pending))
        log.info(
            "event=command_channel_opened device_id=%s commands=%d unreported_results=%d",
            self.device_id, opened.command_count, len(pending),
        )  # fmt: skip
        self.opened.set()
        for entry in pending:
            if entry.outcome is not None:
                self._send_result(entry, entry.outcome)

    async def _on_offer(self, session: Session, command: Command) -> None:
        self.counters.offers += 1
        entry = await self.journal.get(command.command_id)
        if entry is None:
            timeout_s = command.result_timeout.ToTimedelta().total_seconds() or DEFAULT_RESULT_TIMEOUT_S
            entry = await self.journal.receive(
                command.command_id, command.name, as_dict(command.parameters), timeout_s
            )
            log.info(
                "event=command_received device_id=%s command_id=%d name=%s",
                self.device_id, entry.command_id, entry.name,
            )  # fmt: skip
        await self._answer_known(session, entry, offered=True)

    async def _answer_known(self, session: Session, entry: JournalEntry, *, offered: bool) -> None:
        """What an offer (or a run) of a command already in the journal calls for."""
        if entry.state is EntryState.RECEIVED and offered:
            session.send(
                delivery.ConnectCommandsRequest(receipt=delivery.CommandReceipt(command_id=entry.command_id))
            )
            self.counters.receipts_sent += 1
        elif entry.state is EntryState.FINISHED and entry.outcome is not None:
            self._send_result(entry, entry.outcome)
        elif entry.state is EntryState.RUNNING and entry.command_id not in self._active:
            # Running in a process that is gone (recovery at start catches these; kept for safety).
            outcome = Outcome(False, error=INTERRUPTED)
            if await self.journal.finish(entry.command_id, outcome):
                self._log_finished(entry.command_id, entry.name, outcome, 0.0)
                self._send_result(entry, outcome)

    async def _on_run(self, session: Session, command_id: int) -> None:
        if command_id in self._active:
            return  # queued or running here: its result follows
        entry = await self.journal.get(command_id)
        if entry is None:
            log.warning(
                "event=command_run_unknown device_id=%s command_id=%d reason=not_in_journal_never_run",
                self.device_id, command_id,
            )  # fmt: skip
        elif entry.state is EntryState.RECEIVED:
            self._active.add(command_id)
            self._runs.put_nowait(command_id)
        else:
            await self._answer_known(session, entry, offered=False)

    async def _on_withdrawal(self, withdrawal: delivery.CommandWithdrawal) -> None:
        self.counters.withdrawals += 1
        if await self.journal.withdraw(withdrawal.command_id):
            log.info(
                "event=command_withdrawn device_id=%s command_id=%d state=%s",
                self.device_id, withdrawal.command_id, CommandState.Name(withdrawal.state),
            )  # fmt: skip

    async def _on_result_stored(self, session: Session, command_id: int) -> None:
        await self.journal.mark_reported(command_id)
        self.counters.results_stored += 1
        session.unstored.discard(command_id)
        session.stored.set()
        log.debug("event=command_reported device_id=%s command_id=%d", self.device_id, command_id)

    def _send_result(self, entry: JournalEntry, outcome: Outcome) -> None:
        """Send a finished command's result on the open session; without one it waits in the
        journal for the next `opened`."""
        session = self._session
        if session is None or not session.opened:
            return
        session.send(result_message(entry, outcome))
        session.unstored.add(entry.command_id)
        self.counters.results_sent += 1

    async def _on_rpc_error(self, error: grpc.aio.AioRpcError) -> None:
        code = error.code()
        if is_refusal(code):
            if self._refusals.is_news(error):
                self._refusals.refuse(
                    error,
                    buffered=len(await self.journal.unreported()),
                    retry_s=self._slow_backoff.maximum,
                    new_token=self._token.how_to_replace(),
                )
        elif code == grpc.StatusCode.UNIMPLEMENTED:
            if not self._unsupported:
                log.warning(
                    "event=command_channel_unsupported device_id=%s detail=%r retry_max_s=%g"
                    " action=%r",
                    self.device_id, error.details(), self._slow_backoff.maximum,
                    "the ingest service does not serve CommandDeliveryService: upgrade it to take commands",
                )  # fmt: skip
            self._unsupported = True
        else:
            log.warning(
                "event=command_channel_lost device_id=%s code=%s detail=%r",
                self.device_id, code.name, error.details(),
            )  # fmt: skip

    async def _wait_to_retry(self) -> None:
        """Back off (slowly while refused or unsupported, unless a new token just arrived), then
        re-read the token file."""
        self._token.reload()  # shared with the uplink: compare with what this link sent, not reload()'s answer
        slow = (self._refusals.refused and self._token.token == self._token_in_use) or self._unsupported
        delay = (self._slow_backoff if slow else self._backoff).next_delay()
        log.debug("event=command_channel_retry device_id=%s after_seconds=%.2f", self.device_id, delay)
        await asyncio.sleep(delay)
        self._token.reload()

    # -- running ---------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            command_id = await self._runs.get()
            if self._stopping.is_set():
                self._active.discard(command_id)  # stays received: never run
                continue
            self._idle.clear()
            try:
                await self._run_one(command_id)
            except Exception:  # the journal failed (disk full?): the row tells what happened
                log.exception(
                    "event=command_run_failed device_id=%s command_id=%d", self.device_id, command_id
                )
            finally:
                self._active.discard(command_id)
                self._idle.set()

    async def _run_one(self, command_id: int) -> None:
        entry = await self.journal.get(command_id)
        if entry is None or not await self.journal.start(command_id):
            return  # withdrawn (or gone) since it was queued
        log.info(
            "event=command_running device_id=%s command_id=%d name=%s",
            self.device_id, command_id, entry.name,
        )  # fmt: skip
        self.counters.runs += 1
        started = time.monotonic()
        handler = self.handlers.get(entry.name)
        try:
            outcome = await run_command(
                handler, command_id, entry.name, entry.parameters, entry.result_timeout_s, self._tracer
            )
        except asyncio.CancelledError:
            outcome = Outcome(False, error=STOPPED)
            await self.journal.finish(command_id, outcome)
            self._log_finished(command_id, entry.name, outcome, time.monotonic() - started)
            raise
        await self.journal.finish(command_id, outcome)
        self._log_finished(command_id, entry.name, outcome, time.monotonic() - started)
        self._ran.add(1, {"name": entry.name, "succeeded": outcome.succeeded})
        self._send_result(entry, outcome)

    def _log_finished(self, command_id: int, name: str, outcome: Outcome, seconds: float) -> None:
        log.log(
            logging.INFO if outcome.succeeded else logging.WARNING,
            "event=command_finished device_id=%s command_id=%d name=%s succeeded=%s seconds=%.3f error=%r",
            self.device_id, command_id, name, str(outcome.succeeded).lower(), seconds, outcome.error,
        )  # fmt: skip
