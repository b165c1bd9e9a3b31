"""The buffer's settings: where it lives, how much disk it may use and how it commits.

Kept apart from the buffer itself so that the agent's configuration
(gateway_agent/config.py, and the README's table generated from it) reads
the options and their bounds here, not among the SQLite code; what the
commit and synchronous settings trade is told in gateway_agent/buffer.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from gateway_agent.byte_sizes import ByteSize
from gateway_agent.durations import Duration
from gateway_agent.options import Options


class DiskBudget(ByteSize):
    """The buffer's disk budget, which must be more than 1 MiB."""

    more_than = 1024 * 1024


class BufferSettings(Options, kw_only=True, frozen=True):
    """Where the buffer lives, how much disk it may use and how it commits."""

    path: Annotated[Path, Meta(description="The SQLite buffer (created on first run).")] = Path(
        "/var/lib/sensormesh-agent/buffer.sqlite3"
    )
    disk_budget: Annotated[
        DiskBudget,
        Meta(
            description="Disk the buffer may use; beyond it the oldest half is thinned and the loss reported."
        ),
    ] = DiskBudget(512 * 1024 * 1024)
    thin_to: Annotated[float, Meta(gt=0.1, lt=1.0, description="Thin to this fraction of the budget.")] = 0.9
    commit_interval: Annotated[
        Duration, Meta(description="Group commit: readings are written together at most this often...")
    ] = Duration(milliseconds=250)
    commit_max_readings: Annotated[int, Meta(ge=1, description="...or as soon as this many wait.")] = 2000
    max_uncommitted: Annotated[
        int,
        Meta(
            ge=1000,
            description="Readings held in memory at most while the disk stalls; beyond, reported upstream as lost.",
        ),
    ] = 200_000
    synchronous: Annotated[
        Literal["full", "normal"],
        Meta(description="SQLite synchronous mode: full survives power loss, normal only a crash."),
    ] = "full"
