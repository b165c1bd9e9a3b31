"""What `sensormesh up` does when one of its programs exits on its own, with real child processes:
a simulated device exiting is reported and restarted while the services keep running; a service
exiting still ends the stack."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sensormesh_cli.stack.children import Child
from sensormesh_cli.stack.examples import Endpoints
from sensormesh_cli.stack.stack import LocalStack, StackOptions
from sensormesh_cli.stack.status import Status
from sensormesh_cli.stack.supervisor import DeviceSupervisor
from sensormesh_core.config import StorageSettings

pytestmark = pytest.mark.timeout(60)

RUNS = "import time; time.sleep(120)"
# Exits 1 on its first run (as an agent that crashed would), runs on the next.
EXITS_ONCE = (
    "import pathlib, sys, time\n"
    "marker = pathlib.Path(sys.argv[1])\n"
    "if not marker.exists():\n"
    "    marker.touch(); print('boom: something broke', flush=True); sys.exit(1)\n"
    "time.sleep(120)\n"
)
ALWAYS_EXITS = "import sys; sys.exit(1)"
BAD_CONFIGURATION = "import sys; print('inputs.bme280[0].address: bad', flush=True); sys.exit(2)"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def make(name: str, code: str, *args: str) -> Child:
        child = Child(name, [sys.executable, "-c", code, *args], env={}, log_path=tmp_path / f"{name}.log")
        started.append(child)
        return child

    yield make
    for child in started:
        child.stop(5)


def exited(child: Child, within: float = 20) -> int:
    """Wait for `child` to exit on its own; its status."""
    deadline = time.monotonic() + within
    while (code := child.exited()) is None:
        assert time.monotonic() < deadline, f"{child.name} still runs"
        time.sleep(0.01)
    return code


def test_an_agent_that_exits_leaves_the_others_running_and_is_restarted(
    spawn: Callable[..., Child], tmp_path: Path
) -> None:
    output = io.StringIO()
    status = Status(output)
    stack = LocalStack(StackOptions(StorageSettings(data_dir=tmp_path), Endpoints()), status)
    ingest, query = spawn("ingest", RUNS), spawn("query", RUNS)
    flaky = spawn("device-greenhouse-pi", EXITS_ONCE, str(tmp_path / "ran-once"))
    steady = spawn("device-vibration-pi", RUNS)
    stack.running.services, stack.running.devices = [ingest, query], [flaky, steady]
    clock = Clock()
    supervisor = DeviceSupervisor(stack.running.devices, status, clock=clock)

    assert exited(flaky) == 1
    clock.now = 1.0
    supervisor.check()
    assert stack.crashed() is None  # the stack carries on
    assert [c.exited() for c in (ingest, query, steady)] == [None, None, None]
    text = output.getvalue()
    assert "warn device-greenhouse-pi exited with status 1; restarting it in 5 s." in text
    assert "The other programs keep running." in text and "boom: something broke" in text

    first_pid = flaky.pid
    clock.now = 5.9
    supervisor.check()
    assert flaky.pid == first_pid  # not yet due
    clock.now = 6.1
    supervisor.check()
    assert flaky.pid != first_pid and flaky.exited() is None
    assert "ok   device-greenhouse-pi restarted" in output.getvalue()
    assert flaky.log_path.read_text().count("starting device-greenhouse-pi") == 2  # one log, both runs

    ingest.stop(5)  # a service exiting still ends the stack
    assert stack.crashed() is ingest


def test_restarts_back_off_and_a_configuration_error_is_left_down(spawn: Callable[..., Child]) -> None:
    output = io.StringIO()
    crashing, misconfigured = spawn("device-a", ALWAYS_EXITS), spawn("device-b", BAD_CONFIGURATION)
    clock = Clock()
    supervisor = DeviceSupervisor([crashing, misconfigured], Status(output), clock=clock)

    delays = []
    for _ in range(5):
        exited(crashing)
        exited(misconfigured)
        supervisor.check()  # reports the exit
        restart_at = clock.now
        while crashing.exited() is not None:
            clock.now += 0.5
            supervisor.check()
        delays.append(clock.now - restart_at)
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0]  # doubling, capped

    text = output.getvalue()
    assert text.count("device-b exited with status 2; its configuration is unusable: left down.") == 1
    assert "inputs.bme280[0].address: bad" in text
    assert misconfigured.exited() == 2  # never started again
