"""Checks `sensormesh up` makes before starting anything: ports free, data folder not in use."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sensormesh_cli.stack.settings import split_host_port
from sensormesh_cli.stack.status import StepFailed


@dataclass(frozen=True)
class Listener:
    """An address the stack will bind, and the flag that changes it."""

    name: str
    address: str
    flag: str


def check_ports(listeners: list[Listener]) -> None:
    """Raise StepFailed naming the first address that cannot be bound.

    The probe sets SO_REUSEADDR as gRPC and Envoy do, so a port left in
    TIME_WAIT by the previous run counts as free and only a listener counts
    as taken.
    """
    seen: dict[tuple[str, int], str] = {}
    for listener in listeners:
        host, port = split_host_port(listener.address)
        if port == 0:
            raise StepFailed(f"{listener.name}: give a port number ({listener.flag}), not 0")
        if (host, port) in seen:
            raise StepFailed(f"{listener.name} and {seen[host, port]} both want {listener.address}")
        seen[host, port] = listener.name
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StepFailed(
                        f"port {port} ({listener.name}) is taken by another program: stop it "
                        f"(`ss -ltnp 'sport = :{port}'` shows which) or choose another with {listener.flag}"
                    ) from None
                raise StepFailed(
                    f"{listener.name}: cannot bind {listener.address}: {error.strerror}"
                ) from None


class DataFolderLock:
    """An exclusive lock on the data folder: one `sensormesh up` per folder at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "up.pid"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise StepFailed(
                f"another `sensormesh up` (pid {holder}) is running with {self.path.parent}: stop it "
                "first, or give this one another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
