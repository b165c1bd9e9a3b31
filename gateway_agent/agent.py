"""The agent: inputs -> buffer -> uplink, wired once from settings and run until stopped.

Start-up opens the buffer (creating it on first run), builds the inputs and
the channel, then runs the scheduler and the uplink side by side. Stopping
(SIGTERM from systemd, Ctrl-C) cancels both, closes the inputs, commits
what the buffer still holds in memory and closes it: nothing taken is lost
on an orderly stop, and a crash loses at most the last group commit's worth
(see gateway_agent/buffer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from gateway_agent.buffer import Buffer
from gateway_agent.channel import open_channel
from gateway_agent.config import AgentSettings, build_inputs
from gateway_agent.inputs.base import Input
from gateway_agent.scheduler import ReadingSink, Scheduler
from gateway_agent.status import StatusBoard
from gateway_agent.uplink import Uplink
from sensormesh_core.stop_signals import stop_on_signals
from sensormesh_core.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass
class Agent:
    """One running agent: everything it owns, for tests and for an orderly stop."""

    settings: AgentSettings
    buffer: Buffer
    scheduler: Scheduler
    uplink: Uplink
    statuses: StatusBoard
    channel: grpc.aio.Channel
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls, settings: AgentSettings, telemetry: Telemetry, inputs: Sequence[Input] | None = None
    ) -> Agent:
        """Open the buffer and build the parts; `run()` then does the work."""
        token = settings.token_source()
        built = list(inputs) if inputs is not None else build_inputs(settings.inputs)
        buffer = await Buffer.open(settings.buffer)
        statuses = StatusBoard()
        meter = telemetry.meter("gateway_agent")
        u = settings.uplink
        channel = open_channel(
            u.target, tls=u.tls, ca_file=u.ca_file, gzip=u.gzip, interceptors=telemetry.client_interceptors()
        )
        uplink = Uplink(
            u, settings.device_id, token, buffer, statuses, channel, telemetry.tracer("gateway_agent"), meter
        )
        scheduler = Scheduler(
            built, ReadingSink(buffer, meter), statuses, meter,
            retry_initial=settings.input_retry_initial.total_seconds(),
            retry_max=settings.input_retry_max.total_seconds(),
            read_timeout=settings.read_timeout.total_seconds(),
        )  # fmt: skip
        return cls(settings, buffer, scheduler, uplink, statuses, channel)

    def request_stop(self) -> None:
        """Ask `run()` to stop in order (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> None:
        """Read and upload until `request_stop()` (or cancellation); then stop in order:
        inputs first, then commit what is in memory, then let the uplink finish its stream."""
        log.info(
            "event=agent_started device_id=%s inputs=%s target=%s buffer=%s",
            self.settings.device_id, ",".join(i.name for i in self.scheduler.inputs),
            self.settings.uplink.target, self.settings.buffer.path,
        )  # fmt: skip
        scheduler = asyncio.create_task(self.scheduler.run(), name="scheduler")
        uplink = asyncio.create_task(self.uplink.run(), name="uplink")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait({scheduler, uplink, stop}, return_when=asyncio.FIRST_COMPLETED)
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
            await self.buffer.flush()
            self.uplink.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.stop_timeout.total_seconds()):
                    await asyncio.gather(uplink, return_exceptions=True)
            for task in done - {stop}:
                task.result()  # a part that ended by itself failed: raise, so systemd restarts us
        finally:
            for task in (scheduler, uplink, stop):
                task.cancel()
            await asyncio.gather(scheduler, uplink, stop, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        await self.scheduler.close()
        await self.buffer.close()
        await self.channel.close()
        log.info(
            "event=agent_stopped device_id=%s committed_sequence=%s uplink=%s",
            self.settings.device_id, self.uplink.committed, self.uplink.state.value,
        )  # fmt: skip


async def run_until_signalled(agent: Agent) -> None:
    """Run `agent` until SIGTERM or SIGINT, then stop it in order."""
    with stop_on_signals(agent.request_stop):
        await agent.run()
