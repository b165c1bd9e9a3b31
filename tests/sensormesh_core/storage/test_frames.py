"""Frame storage on either backend: the schema the code writes, the image store, retention of its
own (frames go, readings stay), and a device's deletion taking its frames and images with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.frame_blobs import FrameKey, PostgresFrameBlobs
from sensormesh_core.storage.maintenance import Backend, maintain, storage_backend
from sensormesh_core.storage.registry import create_device, delete_device
from sensormesh_core.storage.schema import FRAME_BLOBS_TABLE, FRAME_COLUMNS, FRAMES_TABLE
from tests.support.frames import image, store_frame
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = pytest.mark.storage


async def test_the_frames_table_has_the_columns_ingest_writes(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        FRAMES_TABLE,
    )
    assert tuple(r["column_name"] for r in rows) == (*FRAME_COLUMNS, "receive_time")
    storage = await db.fetchval(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'data'",
        FRAME_BLOBS_TABLE,
    )
    assert storage == b"e"  # EXTERNAL: images are not compressed again ("char" comes as bytes)


async def test_an_image_comes_back_byte_for_byte_by_its_key(db: asyncpg.Connection) -> None:
    await create_device(db, "cam-pi")
    at = datetime.now(UTC).replace(microsecond=123456)
    data = image(text="hello")
    row = await store_frame(db, "cam-pi", 7, at, data)

    blobs = PostgresFrameBlobs()
    assert await blobs.get(db, row.key) == data
    assert await blobs.get(db, FrameKey("cam-pi", 8, at)) is None
    assert await blobs.get(db, FrameKey("cam-pi", 7, at + timedelta(microseconds=1))) is None


async def _expire_frames(db: asyncpg.Connection, settings: StorageSettings, now: datetime) -> None:
    """What retention does on this backend: maintenance (plain PostgreSQL) or the policy's job."""
    if await storage_backend(db) is Backend.PARTITIONED:
        await maintain(db, settings, now=now)
        return
    await maintain(db, settings, apply_policies=True)
    jobs = await db.fetch(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention' "
        "AND hypertable_name = ANY($1::text[])",
        [FRAMES_TABLE, FRAME_BLOBS_TABLE],
    )
    assert len(jobs) == 2
    for job in jobs:
        await db.execute("CALL run_job($1)", job["job_id"])


async def test_frames_past_their_retention_go_with_their_images_and_readings_stay(
    db: asyncpg.Connection,
) -> None:
    await create_device(db, "cam-pi")
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=9), now - timedelta(hours=1)
    for sequence, at in ((1, old), (2, recent)):
        await store_frame(db, "cam-pi", sequence, at, image(text=str(sequence)))
    writer = ReadingWriter(db)
    await writer.write("cam-pi", [environment("bme280", old, 21.0)])  # readings keep 30 days

    await _expire_frames(db, StorageSettings(frame_retention=timedelta(days=7)), now)

    assert [r["sequence"] for r in await db.fetch(f"SELECT sequence FROM {FRAMES_TABLE}")] == [2]
    assert [r["sequence"] for r in await db.fetch(f"SELECT sequence FROM {FRAME_BLOBS_TABLE}")] == [2]
    assert await db.fetchval("SELECT count(*) FROM environment_readings") == 1


async def test_deleting_a_device_deletes_its_frames_and_images_only(db: asyncpg.Connection) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    for device_id in ("cam-pi", "other-pi"):
        await create_device(db, device_id)
        for sequence in (1, 2, 3):
            await store_frame(db, device_id, sequence, at + timedelta(seconds=sequence), image())
    await db.execute(
        "INSERT INTO cameras (device_id, name, last_sequence, last_capture_time) VALUES ('cam-pi', 'cam', 3, $1)",
        at,
    )

    deleted = await delete_device(db, "cam-pi")

    assert deleted.frames == 3
    for table in (FRAMES_TABLE, FRAME_BLOBS_TABLE):
        left = await db.fetch(f"SELECT DISTINCT device_id FROM {table}")
        assert [r["device_id"] for r in left] == ["other-pi"]
    assert await db.fetchval("SELECT count(*) FROM cameras") == 0
