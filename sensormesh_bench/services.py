"""The programs a benchmark runs against, as child processes: `sensormesh <name>` on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path


class ServiceProcess:
    """`sensormesh <name>` in a child process on a free port; its log in a file."""

    def __init__(self, name: str, url: str, folder: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        self._env = {
            **os.environ,
            "SENSORMESH_DATABASE_URL": url,
            f"SENSORMESH_{name.upper()}_LISTEN": "127.0.0.1:0",
            **(env or {}),
        }
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sensormesh_cli", self.name, env=self._env, stderr=out
            )
        await self._find_port()

    async def _find_port(self) -> None:
        pattern = re.compile(r"event=\w+_(?:serving|listening) .*port=(\d+)")
        async with asyncio.timeout(60):
            while not self.port:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(f"sensormesh {self.name} exited:\n{self.log.read_text()[-2000:]}")
                match = pattern.search(self.log.read_text(errors="replace"))
                if match:
                    self.port = int(match.group(1))
                await asyncio.sleep(0.05)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@contextlib.asynccontextmanager
async def services(url: str, folder: Path) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    ingest, control = ServiceProcess("ingest", url, folder), ServiceProcess("control", url, folder)
    try:
        await ingest.start()
        await control.start()
        yield ingest, control
    finally:
        await control.stop()
        await ingest.stop()
