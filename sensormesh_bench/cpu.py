"""Where the benchmark's CPU goes: per process, from /proc (Linux).

The benchmark reports CPU seconds of the server process, of the PostgreSQL
server (postmaster and every backend, including reaped ones) and of the
client processes, so a figure comes with the answer to "what was busy".
Elsewhere than Linux these return None and the benchmark still runs.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, with_reaped_children: bool = False) -> float | None:
    """CPU seconds (user + system, every thread) of `pid` so far."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of `pid`, its live children and those it has reaped (PostgreSQL's backends)."""
    own = process_cpu(pid, with_reaped_children=True)
    if own is None:
        return None
    return own + sum(process_cpu(child) or 0.0 for child in children(pid))


def postmaster_pid(pgdata: Path) -> int | None:
    """The PostgreSQL server's pid from its data directory."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
