"""What `sensormesh up` shows on the terminal: one line per step, with its time.

On a terminal a step shows `...` while it runs and is rewritten in place
with its outcome; elsewhere (a pipe, a log) each step prints one line when it
ends. The details go to the log files, not here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class StepFailed(Exception):
    """A step could not finish; the message says what to do."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while the stack was starting."""


class Status:
    """Prints steps and notes to `stream` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._tty = self._stream.isatty()

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    @contextmanager
    def step(self, label: str) -> Iterator[list[str]]:
        """Run a step; append to the yielded list to add a detail to its line."""
        details: list[str] = []
        started = time.monotonic()
        if self._tty:
            self._write(f"  ...  {label}")
        try:
            yield details
        except StopRequested:
            self._finish("stop", label, details, started)
            raise
        except BaseException:
            self._finish("FAIL", label, details, started)
            raise
        self._finish("ok", label, details, started)

    def _finish(self, outcome: str, label: str, details: list[str], started: float) -> None:
        elapsed = time.monotonic() - started
        detail = f"  {', '.join(details)}" if details else ""
        line = f"  {outcome:<4} {label}{detail}  ({elapsed:.1f} s)"
        self._write(("\r\033[K" if self._tty else "") + line + "\n")

    def note(self, text: str) -> None:
        self._write(text + "\n")

    def warn(self, text: str) -> None:
        self._write(f"  warn {text}\n")
