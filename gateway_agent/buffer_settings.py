"""The buffer's settings: where it lives, how much disk it may use and how it commits.

Kept apart from the buffer itself so that the agent's configuration
(gateway_agent/config.py, and the README's table generated from it) reads
the options and their bounds here, not among the SQLite code; what the
commit and synchronous settings trade is told in gateway_agent/buffer.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field

from gateway_agent.durations import Duration


class BufferSettings(BaseModel):
    """Where the buffer lives, how much disk it may use and how it commits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(
        default=Path("/var/lib/sensormesh-agent/buffer.sqlite3"),
        description="The SQLite buffer (created on first run).",
    )
    disk_budget: ByteSize = Field(
        default=ByteSize(512 * 1024 * 1024),
        gt=1024 * 1024,
        description="Disk the buffer may use; beyond it the oldest half is thinned and the loss reported.",
    )
    thin_to: float = Field(default=0.9, gt=0.1, lt=1.0, description="Thin to this fraction of the budget.")
    commit_interval: Duration = Field(
        default=timedelta(milliseconds=250),
        description="Group commit: readings are written together at most this often...",
    )
    commit_max_readings: int = Field(default=2000, ge=1, description="...or as soon as this many wait.")
    max_uncommitted: int = Field(
        default=200_000,
        ge=1000,
        description="Readings held in memory at most while the disk stalls; beyond, reported upstream as lost.",
    )
    synchronous: Literal["full", "normal"] = Field(
        default="full", description="SQLite synchronous mode: full survives power loss, normal only a crash."
    )
