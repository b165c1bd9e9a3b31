"""Disk usage of the gateway's file systems, from statvfs(3).

For each configured path, one `system` reading with disk_used_bytes and
disk_free_bytes, named "disk:<path>". Used is (f_blocks - f_bfree) × f_frsize,
free is f_bavail × f_frsize: the space an unprivileged process can still
write, which is what fills up first (ext4 keeps 5 % reserved for root), as
`df` reports it.

Units: bytes.

Sample config:

    [[inputs.disk]]
      ## File systems to report, by any path on them.
      # paths = ["/"]
      ## Time between reads.
      # interval = "60s"
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from msgspec import Meta, field

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import InputSettings
from gateway_agent.readings import Reading, now_ns, sensor_name, system


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of the disk input."""

    paths: Annotated[list[Path], Meta(min_length=1)] = field(default_factory=lambda: [Path("/")])
    interval: Duration = Duration(seconds=60)


def usage(path: Path) -> tuple[int, int]:
    """(used bytes, bytes available to unprivileged users) of the file system holding `path`."""
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize, stat.f_bavail * stat.f_frsize


class Disk:
    """Reports usage of each configured path's file system."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.name or "disk"
        self.interval = settings.interval

    async def open(self) -> None:
        return None

    async def read(self) -> Sequence[Reading]:
        sample_time = now_ns()
        readings = []
        for path in self.settings.paths:
            used, free = await asyncio.to_thread(usage, path)
            readings.append(
                system(sensor_name(f"disk:{path}"), sample_time, disk_used_bytes=used, disk_free_bytes=free)
            )
        return readings

    async def close(self) -> None:
        return None


def create(settings: Settings) -> Disk:
    return Disk(settings)
