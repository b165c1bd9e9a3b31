"""What the built-in commands may do to the agent: a narrow protocol, not the Agent itself.

The built-ins (builtins.py) read and change inputs, push the buffer out and
report how the agent is doing; they reach the scheduler, buffer and uplink
only through `AgentControl`, which gateway_agent/control.py implements over
the real parts and tests implement over fakes. The answers are frozen
dataclasses, so a handler turns them into its JSON result without knowing the
parts' classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class InputView:
    """One input as it runs now."""

    name: str
    polled: bool  # read on an interval (else streaming: its source pushes readings)
    enabled: bool
    interval_seconds: float | None  # None for a streaming input
    ok: bool | None  # None before its first read or connection
    error_count: int
    last_error: str


@dataclass(frozen=True)
class AgentStatus:
    """How the agent is doing, for the `status` command."""

    buffer_pending: int
    buffer_used_bytes: int
    buffer_thinned_total: int
    buffer_last_sequence: int | None  # None before the first contact with the server
    uplink_state: str  # connecting | uploading | refused
    uplink_committed_sequence: int | None
    inputs: tuple[InputView, ...]
    agent_version: str
    python_version: str
    uptime_seconds: float
    hostname: str


class AgentControl(Protocol):
    """The agent as the built-in commands see it. Methods raise CommandFailed with a message for
    the operator when the change cannot be made (an unknown or streaming input, a failed read)."""

    def inputs(self) -> Sequence[InputView]:
        """Every configured input, in configuration order."""

    async def read_now(self, name: str) -> int:
        """Read polled input `name` once now into the buffer; returns how many readings."""

    async def set_interval(self, name: str, seconds: float) -> float:
        """Read polled input `name` every `seconds` from now on, and after restarts; returns the
        previous interval."""

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        """Start or stop input `name`, now and after restarts; returns whether it was enabled."""

    async def flush(self, wait_s: float) -> int:
        """Commit what the buffer holds and upload it now; wait up to `wait_s` for the server's
        acknowledgement (not at all while the uplink is not connected). Returns the readings
        still buffered."""

    async def status(self) -> AgentStatus: ...
