"""The camera inputs' command: `capture` a frame now and upload it at once.

    capture   {"input": <camera input>}   -> {"input", "sequence", "acknowledged"}

Advertised only by an agent with a camera input (its `input` parameter lists
them). The frame is taken between the scheduled ones, spooled, and sent at
once; the answer's `sequence` is the frame's number in the device's frame
sequence, which GetFrame takes (`GET /v1/devices/<device>/frames/<sequence>`),
and `acknowledged` says whether the server confirmed it stored the frame
within the command's time (otherwise it follows with the next upload).
The name is reserved whether a camera is configured or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import CommandFailed, time_left

NAME = "capture"
WAIT_S = 10.0
"""Longest wait for the server's acknowledgement (less when the command's timeout is shorter)."""
MARGIN_S = 0.5


class FrameControl(Protocol):
    """What `capture` needs of the agent (gateway_agent/control.py implements it)."""

    async def read_now(self, name: str) -> int:
        """Read (capture with) polled input `name` once now; raises CommandFailed."""

    async def spool_frames(self) -> int | None:
        """Spool the frames taken; the newest frame's sequence (None before the first contact)."""

    async def upload_frames(self, through: int | None, wait_s: float) -> bool:
        """Send spooled frames now; wait up to `wait_s` for the server to acknowledge `through`."""


class Capture:
    """One frame from a camera input now."""

    def __init__(self, control: FrameControl, cameras: list[str]) -> None:
        self._control = control
        self.spec = delivery.CommandSpec(
            name=NAME,
            description="Capture a frame with a camera input now and upload it at once; answers its frame sequence.",
            parameters=[
                delivery.CommandParameter(
                    name="input",
                    description="The camera input.",
                    type=delivery.COMMAND_PARAMETER_TYPE_STRING,
                    required=True,
                    allowed_values=cameras,
                )
            ],
        )

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name = parameters["input"]
        if not await self._control.read_now(name):
            raise CommandFailed(f"{name} captured nothing")
        sequence = await self._control.spool_frames()
        wait_s = min(WAIT_S, max(0.0, time_left(WAIT_S) - MARGIN_S))
        acknowledged = False
        with contextlib.suppress(asyncio.TimeoutError):
            acknowledged = await self._control.upload_frames(sequence, wait_s)
        return {"input": name, "sequence": sequence, "acknowledged": acknowledged}
