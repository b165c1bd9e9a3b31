"""SIGTERM and SIGINT as a request to stop, for the long-running commands.

Inside the block a signal calls `on_signal` (which asks the program to stop in
order); a repeated one calls it again, which is harmless. When the block ends
(the program has stopped cleanly) a later SIGTERM is ignored: asyncio would
otherwise restore the default action when its loop closes, and a supervisor
that repeats its SIGTERM (a test harness, `kill` run twice) in the moments
before the interpreter exits would turn a clean exit 0 into death by signal.
SIGINT gets Python's own handler back, so an impatient Ctrl-C still ends the
process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(on_signal: Callable[[], object]) -> Iterator[None]:
    """Call `on_signal` on SIGTERM or SIGINT while the block runs (in the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
