"""A child of `sensormesh up` (children.py) is the program it was given, in a process group of
its own, and ends when `sensormesh up` is killed without stopping it (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sensormesh_cli.stack.children import Child

pytestmark = pytest.mark.timeout(60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by init) counts as ended.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_child_is_its_program_in_its_own_process_group(tmp_path: Path) -> None:
    child = Child(
        "sleeper", [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
        env={}, log_path=tmp_path / "sleeper.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and str(child.pid) not in (tmp_path / "sleeper.log").read_text():
            time.sleep(0.05)
        # The pid Child knows is the program's own (what stop() signals), not a wrapper's.
        assert f"\n{child.pid}\n" in (tmp_path / "sleeper.log").read_text()
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    finally:
        assert child.stop(5) == -signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_ends_when_sensormesh_up_is_killed(tmp_path: Path) -> None:
    parent = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sensormesh_cli.stack.children import Child
        child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                      env={{}}, log_path=Path({str(tmp_path / "sleeper.log")!r}))
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    up = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    assert up.stdout is not None
    pid = int(up.stdout.readline())
    assert _alive(pid)
    up.kill()  # as kill -9: no chance to stop its children
    up.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)
