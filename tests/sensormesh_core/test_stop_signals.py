"""SIGTERM stops a command in order; a repeated one, even after the loop closed, never kills it."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
import asyncio, os, signal
from sensormesh_core.stop_signals import stop_on_signals

async def main():
    stop = asyncio.Event()
    with stop_on_signals(stop.set):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)  # repeated while stopping
        await asyncio.sleep(0)
    print("stopped in order", flush=True)

asyncio.run(main())
os.kill(os.getpid(), signal.{late})  # after the loop closed, before the interpreter exits
print("exited", flush=True)
"""


def _run(late_signal: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(late=late_signal)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_sigterm_after_a_clean_stop_does_not_kill_the_process() -> None:
    result = _run("SIGTERM")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["stopped in order", "exited"]


def test_ctrl_c_after_a_clean_stop_still_interrupts() -> None:
    result = _run("SIGINT")
    assert result.stdout.splitlines() == ["stopped in order"]
    assert "KeyboardInterrupt" in result.stderr
