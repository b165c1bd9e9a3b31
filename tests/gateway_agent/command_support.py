"""Helpers for command tests: a recording handler, a link run as a task, journal look-ups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import CommandFailed
from gateway_agent.commands.link import CommandLink


def parameter(
    name: str, kind: int = delivery.COMMAND_PARAMETER_TYPE_STRING, **options: Any
) -> delivery.CommandParameter:
    return delivery.CommandParameter(name=name, type=kind, **options)  # type: ignore[arg-type]


class Recorder:
    """A handler that records each run. With `gate`, each run waits for it; with `fail`, it
    raises that; `overlap` is the most runs seen at once."""

    def __init__(
        self,
        name: str = "record",
        parameters: tuple[delivery.CommandParameter, ...] = (),
        gate: asyncio.Event | None = None,
        fail: BaseException | None = None,
    ) -> None:
        self.spec = delivery.CommandSpec(name=name, description=f"{name} for tests", parameters=parameters)
        self.calls: list[dict[str, Any]] = []
        self.finished: list[dict[str, Any]] = []
        self.cancelled = 0
        self.gate = gate
        self.fail = fail
        self.running = 0
        self.overlap = 0

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(parameters)
        self.running += 1
        self.overlap = max(self.overlap, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            if self.fail is not None:
                raise self.fail
            self.finished.append(parameters)
            return {"echo": parameters}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


class Failing(Recorder):
    """A handler that fails the handled way, keeping a partial result."""

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(parameters)
        raise CommandFailed("the relay did not answer", {"tried": 3})


@contextlib.asynccontextmanager
async def running(link: CommandLink) -> AsyncIterator[CommandLink]:
    """Run `link` for the block; then stop it in order (bounded) and make sure it is gone."""
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        link.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
