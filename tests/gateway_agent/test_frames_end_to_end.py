"""A whole agent with a camera, through a cut network and an ingest restart, to the real ingest
service on PostgreSQL: every frame it took is stored exactly once, image for image (counts and
checksums), on the frame mark alone; readings go on beside them."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from gateway_agent.agent import Agent
from gateway_agent.config import AgentSettings
from gateway_agent.inputs import camera, simulated
from gateway_agent.inputs.camera_source import Captured
from gateway_agent.options import Secret
from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.storage.registry import create_device
from sensormesh_core.telemetry import configure_telemetry
from tests.faults.proxy import FaultProxy
from tests.support.frames import image
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.slow]


class NumberedCamera:
    """A camera whose n-th capture is a JPEG with n drawn on it; remembers what it took."""

    def __init__(self) -> None:
        self.taken: list[bytes] = []

    def open(self) -> None:
        return None

    def capture(self) -> Captured:
        data = image(64, 48, text=str(len(self.taken)))
        self.taken.append(data)
        return Captured(data, 64, 48)

    def close(self) -> None:
        return None


async def _ingest(database_url: str, port: int) -> IngestServer:
    return await start(
        IngestSettings(
            database_url=SecretStr(database_url),
            ingest_listen=f"127.0.0.1:{port}",
            ingest_frame_rate=1000,
            pool_min_size=1,
            pool_max_size=4,
        )
    )


@pytest.fixture
async def token(db: asyncpg.Connection) -> str:
    _, secret = await create_device(db, "camera-pi")
    return secret


async def _stored(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch(
        "SELECT b.data FROM frames f JOIN frame_blobs b USING (device_id, sequence, time) ORDER BY f.sequence"
    )
    return [hashlib.sha256(r["data"]).hexdigest() for r in rows]


async def test_frames_through_a_cut_network_and_an_ingest_restart_are_stored_exactly_once(
    database_url: str, db: asyncpg.Connection, token: str, tmp_path: Path
) -> None:
    port = free_port()
    ingest = await _ingest(database_url, port)
    proxy = FaultProxy(("127.0.0.1", port))
    proxy.start()
    source = NumberedCamera()
    settings = AgentSettings.validate(
        dict(
            device_id="camera-pi",
            token=Secret(token),
            uplink={
                "target": proxy.target,
                "tls": False,
                "batch_max_age": "50ms",
                "stream_max_duration": "1s",
                "backoff_initial": "20ms",
                "backoff_max": "200ms",
                "ack_timeout": "5s",
            },
            buffer={"path": tmp_path / "buffer.sqlite3", "commit_interval": "20ms"},
            commands={"enabled": False},
        )
    )
    inputs = [
        camera.Camera(camera.Settings(name="door", interval=timedelta(milliseconds=50)), source),
        simulated.create(simulated.Settings(kind="environment", interval=timedelta(milliseconds=100))),
    ]
    agent = await Agent.start(settings, configure_telemetry("test-agent", set_global=False), inputs)
    running = asyncio.create_task(agent.run())
    try:

        async def stored_at_least(count: int) -> bool:
            return len(await _stored(db)) >= count

        await wait_until(lambda: stored_at_least(10), within=30, what="10 frames stored")
        proxy.cut()  # the link drops; the camera keeps taking frames into the spool
        await asyncio.sleep(1.0)
        proxy.restore()
        backlog = len(source.taken)
        await wait_until(lambda: stored_at_least(backlog), within=30, what="the backlog")
        await ingest.stop(grace=2)  # ingest restarts while frames keep coming
        await asyncio.sleep(0.5)
        ingest = await _ingest(database_url, port)
        after_restart = len(source.taken) + 5
        await wait_until(lambda: stored_at_least(after_restart), within=30, what="frames after restart")
    finally:
        agent.request_stop()
        await asyncio.wait_for(running, 30)
        proxy.close()
    try:
        taken = [hashlib.sha256(data).hexdigest() for data in source.taken]
        stored = await _stored(db)
        # Every frame, once, in order, image for image; the stop may cancel one capture midway
        # (taken by the camera, never handed to the agent).
        assert stored == taken[: len(stored)] and len(stored) >= len(taken) - 1
        mark = await db.fetchval("SELECT committed_sequence FROM frame_offsets WHERE device_id = 'camera-pi'")
        assert mark == len(stored)
        assert await db.fetchval("SELECT count(*) FROM environment_readings") > 0
    finally:
        await ingest.stop(grace=2)


async def test_the_capture_command_takes_a_frame_now_and_answers_its_stored_sequence(
    database_url: str, db: asyncpg.Connection, token: str, tmp_path: Path
) -> None:
    ingest = await _ingest(database_url, free_port())
    source = NumberedCamera()
    settings = AgentSettings.validate(
        dict(
            device_id="camera-pi",
            token=Secret(token),
            uplink={"target": f"127.0.0.1:{ingest.port}", "tls": False, "batch_max_age": "50ms"},
            buffer={"path": tmp_path / "buffer.sqlite3"},
        )
    )
    hourly = camera.Camera(camera.Settings(name="door", interval=timedelta(hours=1)), source)
    agent = await Agent.start(settings, configure_telemetry("test-agent", set_global=False), [hourly])
    running = asyncio.create_task(agent.run())
    try:
        assert agent.commands is not None
        capture = agent.commands.handlers["capture"]
        assert list(capture.spec.parameters[0].allowed_values) == ["door"]
        await wait_until(lambda: _count_at_least(db, 1), within=30, what="the scheduled first frame")

        answer = await capture.run({"input": "door"})

        assert answer["input"] == "door" and answer["acknowledged"] is True
        stored = await db.fetchrow(
            "SELECT b.data FROM frames f JOIN frame_blobs b USING (device_id, sequence, time) WHERE f.sequence = $1",
            answer["sequence"],
        )
        assert stored is not None and bytes(stored["data"]) == source.taken[-1]
    finally:
        agent.request_stop()
        await asyncio.wait_for(running, 30)
        await ingest.stop(grace=2)


async def _count_at_least(db: asyncpg.Connection, count: int) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM frames") >= count)
