"""The agent: inputs -> buffer -> uplink, and commands back; wired once from settings, run until stopped.

Start-up opens the buffer (creating it on first run), builds the inputs and
the channel, then runs the scheduler, the uplink and (unless `[commands]`
disables it) the command link side by side. The command link shares the
uplink's channel and token, and its journal and the inputs' stored overrides
share the buffer's file (gateway_agent/commands/).

Stopping (SIGTERM from systemd, Ctrl-C) goes in order: the command link
first (no new command starts; the running one has `stop_timeout` to finish
and report), then the inputs, then the buffer commits what it holds in
memory, then the uplink's stream gets `stop_timeout` to be acknowledged:
nothing taken is lost on an orderly stop, and a crash loses at most the last
group commit's worth (see gateway_agent/buffer.py).
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
from gateway_agent.commands.base import CommandHandler, ManagedHandler
from gateway_agent.commands.builtins import RESERVED_NAMES, builtin_handlers
from gateway_agent.commands.capture import Capture
from gateway_agent.commands.input_overrides import InputOverrides
from gateway_agent.commands.journal import CommandJournal
from gateway_agent.commands.link import CommandLink, LinkTiming
from gateway_agent.commands.store import StateStore
from gateway_agent.config import AgentSettings, build_commands, build_inputs
from gateway_agent.control import AgentControls, apply_stored_overrides
from gateway_agent.frame_buffer import FrameBuffer
from gateway_agent.frame_uplink import FrameUplink
from gateway_agent.inputs.base import Input
from gateway_agent.scheduler import ReadingSink, Scheduler
from gateway_agent.status import StatusBoard
from gateway_agent.token_source import TokenSource
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
    commands: CommandLink | None = None
    command_store: StateStore | None = None
    frames: FrameBuffer | None = None  # with a camera input: its frame spool and uplink
    frame_uplink: FrameUplink | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls, settings: AgentSettings, telemetry: Telemetry, inputs: Sequence[Input] | None = None
    ) -> Agent:
        """Open the buffer and build the parts; `run()` then does the work."""
        token = settings.token_source()
        built = list(inputs) if inputs is not None else build_inputs(settings.inputs)
        configured = build_commands(settings.commands, RESERVED_NAMES) if settings.commands.enabled else []
        buffer = await Buffer.open(settings.buffer)
        cameras = [i.name for i in built if getattr(i, "captures_frames", False)]
        frames = FrameBuffer(buffer) if cameras else None
        statuses = StatusBoard()
        meter = telemetry.meter("gateway_agent")
        u = settings.uplink
        channel = open_channel(
            u.target, tls=u.tls, ca_file=u.ca_file, gzip=u.gzip, interceptors=telemetry.client_interceptors()
        )
        uplink = Uplink(
            u, settings.device_id, token, buffer, statuses, channel, telemetry.tracer("gateway_agent"), meter
        )
        frame_uplink = None
        if frames is not None:
            frames.start()
            frame_uplink = FrameUplink(
                u, settings.device_id, token, frames, channel, telemetry.tracer("gateway_agent")
            )
        scheduler = Scheduler(
            built, ReadingSink(buffer, meter, frames), statuses, meter,
            retry_initial=settings.input_retry_initial.total_seconds(),
            retry_max=settings.input_retry_max.total_seconds(),
            read_timeout=settings.read_timeout.total_seconds(),
        )  # fmt: skip
        agent = cls(
            settings, buffer, scheduler, uplink, statuses, channel, frames=frames, frame_uplink=frame_uplink
        )
        if settings.commands.enabled:
            await agent._start_commands(configured, token, telemetry, cameras)
        return agent

    async def _start_commands(
        self, configured: list[CommandHandler], token: TokenSource, telemetry: Telemetry, cameras: list[str]
    ) -> None:
        """The command link, its journal, the stored input overrides and every handler (`capture`
        with camera inputs)."""
        self.command_store = store = await StateStore.open(self.settings.buffer.path)
        overrides = await InputOverrides.open(store)
        await apply_stored_overrides(self.scheduler, overrides)
        frames = None
        if self.frames is not None and self.frame_uplink is not None:
            frames = (self.frames, self.frame_uplink)
        controls = AgentControls(self.scheduler, self.buffer, self.uplink, self.statuses, overrides, frames)
        camera_handlers: list[CommandHandler] = [Capture(controls, cameras)] if cameras else []
        handlers = [*builtin_handlers(controls), *camera_handlers, *configured]
        for handler in handlers:
            if isinstance(handler, ManagedHandler):
                await handler.open()
        self.commands = CommandLink(
            self.settings.device_id, token, self.channel,
            await CommandJournal.open(store), handlers, telemetry.tracer("gateway_agent"),
            telemetry.meter("gateway_agent"), LinkTiming.like(self.settings.uplink),
        )  # fmt: skip

    def request_stop(self) -> None:
        """Ask `run()` to stop in order (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> None:
        """Read and upload until `request_stop()` (or cancellation); then stop in order:
        inputs first, then commit what is in memory, then let the uplink finish its stream."""
        log.info(
            "event=agent_started device_id=%s inputs=%s commands=%s target=%s buffer=%s",
            self.settings.device_id, ",".join(i.name for i in self.scheduler.inputs),
            ",".join(self.commands.handlers) if self.commands else "disabled",
            self.settings.uplink.target, self.settings.buffer.path,
        )  # fmt: skip
        scheduler = asyncio.create_task(self.scheduler.run(), name="scheduler")
        uplink = asyncio.create_task(self.uplink.run(), name="uplink")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        parts = {scheduler, uplink, stop}
        frame_uplink = None
        if self.frame_uplink is not None:
            frame_uplink = asyncio.create_task(self.frame_uplink.run(), name="frame-uplink")
            parts.add(frame_uplink)
        commands = None
        if self.commands is not None:
            commands = asyncio.create_task(self.commands.run(), name="commands")
            parts.add(commands)
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
            if commands is not None and self.commands is not None:
                self.commands.stop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.stop_timeout.total_seconds()):
                        await asyncio.gather(commands, return_exceptions=True)
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
            await self.buffer.flush()
            if self.frames is not None:
                await self.frames.flush()
            self.uplink.stop()
            if self.frame_uplink is not None:
                self.frame_uplink.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.stop_timeout.total_seconds()):
                    await asyncio.gather(*[t for t in (uplink, frame_uplink) if t], return_exceptions=True)
            for task in done - {stop}:
                task.result()  # a part that ended by itself failed: raise, so systemd restarts us
        finally:
            for task in parts:
                task.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        await self.scheduler.close()
        if self.commands is not None:
            for handler in self.commands.handlers.values():
                if isinstance(handler, ManagedHandler):
                    await handler.close()
        if self.command_store is not None:
            await self.command_store.close()
        if self.frames is not None:
            await self.frames.close()
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
