"""The commands benchmark's returning agents: devices that were away come back, each with the
agent's own command link and journal (its SQLite file, fsynced as on a gateway), answering ping,
and run the commands queued for them."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import asyncpg
import grpc
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from gateway_agent.commands.builtins import Ping
from gateway_agent.commands.journal import CommandJournal
from gateway_agent.commands.link import CommandLink, LinkTiming
from gateway_agent.commands.store import StateStore
from gateway_agent.token_source import TokenSource
from sensormesh_core.command_states import SUCCEEDED
from sensormesh_core.storage import command_offers


async def advertise(url: str, device_ids: list[str]) -> None:
    """Record what the devices understand, as their agents would have when they last connected."""
    specs = [Ping().spec]
    conn = await asyncpg.connect(url)
    try:
        for device_id in device_ids:
            await command_offers.advertise(conn, device_id, specs)
    finally:
        await conn.close()


async def connect_all(
    url: str, target: str, devices: list[tuple[str, str]], expected: int, folder: Path
) -> tuple[int, float]:
    """Connect every device's link; returns how many commands SUCCEEDED and the seconds it took."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    logging.getLogger("gateway_agent").setLevel(logging.WARNING)  # a line per step of 1,000 commands
    channel = grpc.aio.insecure_channel(target)
    links, tasks = [], []
    started = time.monotonic()
    try:
        for device_id, token in devices:
            store = await StateStore.open(folder / f"{device_id}.sqlite3")
            journal = await CommandJournal.open(store)
            link = CommandLink(
                device_id, TokenSource(token), channel, journal, [Ping()],
                NoOpTracerProvider().get_tracer("bench"), NoOpMeterProvider().get_meter("bench"), LinkTiming(),
            )  # fmt: skip
            links.append(link)
            tasks.append(asyncio.create_task(link.run()))
        done = await _wait_succeeded(url, expected)
        seconds = time.monotonic() - started
    finally:
        for link in links:
            link.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()
    return done, seconds


async def _wait_succeeded(url: str, expected: int, timeout_s: float = 300) -> int:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            done = int(
                await conn.fetchval(
                    "SELECT count(*) FROM commands WHERE state = $1 AND device_id LIKE 'bench-away-%'",
                    SUCCEEDED,
                )
            )
            if done >= expected or time.monotonic() > deadline:
                return done
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
