"""Graceful shutdown: stop taking batches, commit the ones in flight, tell the
streams to resume elsewhere, exit; in-process and as `sensormesh ingest`
receiving SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer
from tests.ingest_service.conftest import Device, details
from tests.ingest_service.readings import batch, batches, expected, mark, stored
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage
UPLOAD_FORMS = ("rows", "columns")


async def _hold_mark(db: asyncpg.Connection, device_id: str) -> asyncpg.transaction.Transaction:
    """Lock the device's offset row, so that its next batch waits inside its transaction."""
    transaction = db.transaction()
    await transaction.start()
    await db.execute("SELECT 1 FROM upload_offsets WHERE device_id = $1 FOR UPDATE", device_id)
    return transaction


async def _a_batch_waits_on_the_lock(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%upload_offsets%'"
        )
        return bool(waiting)
    finally:
        await conn.close()


async def test_stop_commits_the_batch_in_flight_and_ends_streams_with_unavailable(
    ingest: IngestServer, stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection,
    database_url: str,
) -> None:  # fmt: skip
    fourth = asyncio.Event()

    async def upload() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        for request in batches(device.device_id, 1, 300, 100):
            yield request
        await fourth.wait()
        yield batch(device.device_id, 301, 400)
        await asyncio.Event().wait()  # the gateway keeps its stream open

    call = stub.UploadReadings(upload(), metadata=device.metadata)
    await wait_until(lambda: _mark_is(db, device.device_id, 300))
    held = await _hold_mark(db, device.device_id)
    fourth.set()
    await wait_until(lambda: _a_batch_waits_on_the_lock(database_url))

    stopping = asyncio.create_task(ingest.stop(grace=30))
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waiting for the batch in flight
    await held.rollback()
    await asyncio.wait_for(stopping, 30)

    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await call
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details(ended.value)["ErrorInfo"].reason == "SHUTTING_DOWN"  # type: ignore[attr-defined]
    assert "GetUploadOffset" in (ended.value.details() or "")
    assert await mark(db, device.device_id) == 400
    assert await stored(db, device.device_id) == expected(range(1, 401))


async def _mark_is(db: asyncpg.Connection, device_id: str, sequence: int) -> bool:
    return await mark(db, device_id) == sequence


async def test_sigterm_stops_sensormesh_ingest_after_committing_what_it_received(
    database_url: str, device: Device, db: asyncpg.Connection
) -> None:
    env = {**os.environ, "SENSORMESH_DATABASE_URL": database_url, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "ingest", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    log: list[str] = []
    try:
        port = 0
        async with asyncio.timeout(60):
            while not port:
                line = (await process.stderr.readline()).decode()
                assert line, "".join(log)
                log.append(line)
                if found := re.search(r"event=ingest_listening .*port=(\d+)", line):
                    port = int(found.group(1))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            held = await _hold_mark(db, device.device_id)

            async def one_batch() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
                yield batch(device.device_id, 1, 100)
                await asyncio.Event().wait()

            call = stub.UploadReadings(one_batch(), metadata=device.metadata)
            await wait_until(lambda: _a_batch_waits_on_the_lock(database_url))
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert process.returncode is None  # still committing
            await held.rollback()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await call
        async with asyncio.timeout(30):
            log += (await process.stderr.read()).decode().splitlines(keepends=True)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    assert await mark(db, device.device_id) == 100
    assert any("event=ingest_stopped" in line for line in log), "".join(log)
