"""`python -m sensormesh_cli.stack.die_with_parent PARENT_PID PROGRAM [ARGS...]`: become PROGRAM,
set to get SIGTERM when `sensormesh up` (PARENT_PID) dies without stopping it (Linux; elsewhere
it only runs PROGRAM).

`sensormesh up` starts every child through this rather than asking for the signal between
fork and exec (`preexec_fn`). That ran Python in a forked copy of a process that has gRPC's
threads, with gRPC's fork hooks: once a child hung there, before exec, `Popen` never returned
and `up` stopped at "simulated devices started". Here the request is made by a fresh process,
and the kernel keeps it across the exec into PROGRAM (same pid, same process group).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, program = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:
            sys.exit(f"{program[0]}: sensormesh up ({parent}) ended before it started")
    os.execvp(program[0], program)  # noqa: S606 - our own programs, as Child was given them


if __name__ == "__main__":
    main(sys.argv[1:])
