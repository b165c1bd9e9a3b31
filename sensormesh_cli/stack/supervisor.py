"""What `sensormesh up` does when a simulated device's program exits on its own.

The database, ingest, query and Envoy are the stack: when one of them exits,
`sensormesh up` stops the rest (see up_command.supervise). A simulated device
(an agent, the direct device) is one client among many, as on a real fleet:
when one exits the others and the services keep running. The status output
says so, with the end of its log, and the device is started again after a
backoff (5 s, doubling to 60 s, back to 5 s once a run lasted a minute), as
systemd's `Restart=always` does for the agent on a Pi. Exit status 2 means
its configuration is unusable (`sensormesh agent` exits 2 for that), so a
restart would fail the same way: that device is left down, and said so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sensormesh_cli.stack.children import Child
from sensormesh_cli.stack.status import Status

log = logging.getLogger(__name__)

CONFIGURATION_ERROR = 2  # `sensormesh agent`'s exit status for an unusable configuration
RESTART_INITIAL_S = 5.0
RESTART_MAX_S = 60.0
STABLE_RUN_S = 60.0  # a run this long resets the backoff


@dataclass
class _Watch:
    """One device's restart bookkeeping."""

    since: float  # when its current run started
    failures: int = 0  # consecutive short runs
    restart_at: float | None = None  # set while it waits to be started again
    left_down: bool = False


class DeviceSupervisor:
    """Call `check()` periodically: reports devices that exited and restarts them when due."""

    def __init__(
        self,
        devices: Sequence[Child],
        status: Status,
        *,
        initial_s: float = RESTART_INITIAL_S,
        max_s: float = RESTART_MAX_S,
        stable_s: float = STABLE_RUN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._devices = devices
        self._status = status
        self._initial_s, self._max_s, self._stable_s = initial_s, max_s, stable_s
        self._clock = clock
        now = clock()
        self._watches = {child.name: _Watch(since=now) for child in devices}

    def check(self) -> None:
        now = self._clock()
        for child in self._devices:
            watch = self._watches.setdefault(child.name, _Watch(since=now))
            if watch.left_down:
                continue
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(child, watch, now)
                continue
            code = child.exited()
            if code is not None:
                self._exited(child, watch, code, now)

    def _exited(self, child: Child, watch: _Watch, code: int, now: float) -> None:
        ran_s = now - watch.since
        watch.failures = 1 if ran_s >= self._stable_s else watch.failures + 1
        log.warning("event=device_exited name=%s status=%d ran_s=%.1f", child.name, code, ran_s)
        if code == CONFIGURATION_ERROR:
            watch.left_down = True
            what = "its configuration is unusable: left down"
        else:
            delay = min(self._max_s, self._initial_s * 2 ** (watch.failures - 1))
            watch.restart_at = now + delay
            what = f"restarting it in {delay:.0f} s"
        self._status.warn(
            f"{child.name} exited with status {code}; {what}. The other programs keep running. "
            f"The end of {child.log_path}:\n{child.log_tail()}"
        )

    def _restart(self, child: Child, watch: _Watch, now: float) -> None:
        watch.restart_at = None
        watch.since = now
        with self._status.step(f"{child.name} restarted"):
            child.restart()
