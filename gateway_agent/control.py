"""The agent's control surface for the built-in commands: AgentControl over the real parts.

It joins what the commands need from the scheduler (inputs at run time), the
buffer and uplink (flush, depth), the status board (input health) and the
stored input overrides, and turns the scheduler's refusals into
`CommandFailed` for the operator. A change that must survive a restart is
committed to the overrides before it is applied, so an answered command is
never lost by a crash right after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import time
from collections.abc import Sequence

from gateway_agent.buffer import Buffer
from gateway_agent.commands.base import CommandFailed
from gateway_agent.commands.control import AgentStatus, InputView
from gateway_agent.commands.input_overrides import InputOverrides, effective
from gateway_agent.frame_buffer import FrameBuffer
from gateway_agent.frame_uplink import FrameUplink
from gateway_agent.inputs.base import PolledInput
from gateway_agent.scheduler import ControlError, Scheduler
from gateway_agent.status import StatusBoard
from gateway_agent.uplink import Uplink, UplinkState
from sensormesh_core import __version__


class AgentControls:
    """AgentControl (gateway_agent/commands/control.py) for one running agent."""

    def __init__(
        self,
        scheduler: Scheduler,
        buffer: Buffer,
        uplink: Uplink,
        statuses: StatusBoard,
        overrides: InputOverrides | None,
        frames: tuple[FrameBuffer, FrameUplink] | None = None,
    ) -> None:
        """`frames`: the frame spool and its uplink, when a camera input is configured."""
        self._frames = frames
        self._scheduler = scheduler
        self._buffer = buffer
        self._uplink = uplink
        self._statuses = statuses
        self._overrides = overrides
        self._configured = {
            i.name: i.interval.total_seconds() for i in scheduler.inputs if isinstance(i, PolledInput)
        }
        self._started = time.monotonic()

    def inputs(self) -> Sequence[InputView]:
        views = []
        for item in self._scheduler.runtime():
            health = self._statuses.health(item.name)
            views.append(
                InputView(
                    name=item.name,
                    polled=item.polled,
                    enabled=item.enabled,
                    interval_seconds=item.interval_seconds,
                    ok=None if health is None else health.ok,
                    error_count=0 if health is None else health.error_count,
                    last_error="" if health is None else health.last_error,
                )
            )
        return views

    def _input(self, name: str) -> InputView:
        for view in self.inputs():
            if view.name == name:
                return view
        raise CommandFailed(f"no input named {name!r}; configured: {', '.join(self._names()) or 'none'}")

    def _names(self) -> list[str]:
        return [item.name for item in self._scheduler.runtime()]

    async def read_now(self, name: str) -> int:
        try:
            return await self._scheduler.read_now(name)
        except ControlError as error:
            raise CommandFailed(str(error)) from error

    async def set_interval(self, name: str, seconds: float) -> float:
        if not self._input(name).polled:
            raise CommandFailed(f"{name} is a streaming input: its source decides when readings come")
        if self._overrides is not None:
            await self._overrides.set_interval(name, seconds, self._configured.get(name))
        try:
            return self._scheduler.set_interval(name, seconds)
        except ControlError as error:
            raise CommandFailed(str(error)) from error

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        self._input(name)
        if self._overrides is not None:
            await self._overrides.set_enabled(name, enabled)
        return await self._scheduler.set_enabled(name, enabled)

    async def flush(self, wait_s: float) -> int:
        await self._buffer.flush()
        through = self._buffer.last_sequence if self._buffer.bound else None
        self._uplink.send_now()
        if through is not None and wait_s > 0 and self._uplink.state is UplinkState.UPLOADING:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._uplink.wait_acknowledged(through)
        return (await self._buffer.stats()).pending

    async def spool_frames(self) -> int | None:
        if self._frames is None:
            raise CommandFailed("this agent has no camera input")
        return await self._frames[0].flush()

    async def upload_frames(self, through: int | None, wait_s: float) -> bool:
        if self._frames is None:
            raise CommandFailed("this agent has no camera input")
        uplink = self._frames[1]
        uplink.send_now()
        if through is None or wait_s <= 0:
            return False
        try:
            async with asyncio.timeout(wait_s):
                await uplink.wait_acknowledged(through)
        except TimeoutError:
            return False
        return True

    async def status(self) -> AgentStatus:
        stats = await self._buffer.stats()
        return AgentStatus(
            buffer_pending=stats.pending,
            buffer_used_bytes=stats.used_bytes,
            buffer_thinned_total=stats.thinned_total,
            buffer_last_sequence=stats.last_sequence,
            uplink_state=self._uplink.state.value,
            uplink_committed_sequence=self._uplink.committed,
            inputs=tuple(self.inputs()),
            agent_version=__version__,
            python_version=platform.python_version(),
            uptime_seconds=time.monotonic() - self._started,
            hostname=socket.gethostname(),
        )


async def apply_stored_overrides(scheduler: Scheduler, overrides: InputOverrides) -> None:
    """Before the scheduler runs: the intervals and enabled flags commands set, unless agent.toml
    changed the interval since (gateway_agent/commands/input_overrides.py)."""
    configured: dict[str, float | None] = {
        i.name: i.interval.total_seconds() if isinstance(i, PolledInput) else None for i in scheduler.inputs
    }
    applied = effective(await overrides.load(), configured)
    for name in applied.dropped:
        await overrides.set_interval(name, None, None)
    for name, seconds in applied.intervals.items():
        scheduler.set_interval(name, seconds)
    for name in applied.disabled:
        await scheduler.set_enabled(name, False)
