"""The frame spool beside the SQLite buffer: frames numbered on their own sequence, read within a
byte limit, forgotten with their files; over the shared disk budget frames go before readings and
the loss is reported per camera; a crash's leftovers are cleaned up and a lost file is reported."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sensormesh.v1.frame_pb2 import Frame

from gateway_agent.buffer import Buffer, BufferSettings
from gateway_agent.frame_buffer import FrameBuffer
from tests.gateway_agent.conftest import imu_records


def frame(camera: str, n: int, size: int = 1000) -> Frame:
    message = Frame(camera=camera, content_type="image/jpeg", width=64, height=48, data=os.urandom(size))
    message.capture_time.FromNanoseconds(1_767_225_600 * 10**9 + n * 10**9)
    return message


@pytest.fixture
async def spooled(tmp_path: Path) -> AsyncIterator[tuple[Buffer, FrameBuffer]]:
    buffer = await Buffer.open(
        BufferSettings(
            path=tmp_path / "buffer.sqlite3",
            commit_interval=timedelta(milliseconds=20),
            disk_budget=3 * 1024 * 1024,  # type: ignore[arg-type]
        )
    )
    frames = FrameBuffer(buffer)
    frames.start()
    try:
        yield buffer, frames
    finally:
        await frames.close()
        await buffer.close()


async def test_frames_are_numbered_on_their_own_sequence_and_read_within_a_byte_limit(
    spooled: tuple[Buffer, FrameBuffer], tmp_path: Path
) -> None:
    buffer, frames = spooled
    await buffer.bind_sequence(500)  # the readings' mark has nothing to do with frames
    await frames.bind_sequence(40)
    sent = [frame("door", n, 1000) for n in range(5)]
    frames.add(sent)
    assert await frames.flush() == 45

    batch = await frames.read(40, limit=10, max_bytes=2500)

    assert [f.sequence for f in batch] == [41, 42]
    assert [Frame.FromString(f.payload).data for f in batch] == [f.data for f in sent[:2]]
    await frames.forget_through(43)
    assert await frames.pending() == 2
    assert len(list((tmp_path / "buffer.sqlite3.frames").iterdir())) == 2


async def test_over_the_budget_frames_are_thinned_before_readings_and_reported(
    spooled: tuple[Buffer, FrameBuffer],
) -> None:
    buffer, frames = spooled
    await buffer.bind_sequence(0)
    await frames.bind_sequence(0)
    buffer.add(imu_records(1, 2000))
    await buffer.flush()
    for n in range(40):  # 40 x 100 KB, over the 3 MiB budget
        frames.add([frame("door" if n % 2 else "yard", n, 100_000)])
        await frames.flush()

    assert frames.thinned_total > 0
    assert buffer.thinned_total == 0  # readings untouched
    assert (await buffer.stats()).used_bytes <= 3 * 1024 * 1024
    reports = await frames.pending_thinning()
    assert {r.camera for r in reports} == {"door", "yard"}
    assert sum(r.count for r in reports) == frames.thinned_total
    assert all(r.first_capture_time_ns <= r.last_capture_time_ns for r in reports)
    newest = await frames.read(frames.last_sequence - 1, 1, 10**9)
    assert newest[0].sequence == frames.last_sequence  # the newest frames are kept


async def test_a_crash_leaves_nothing_half_written_and_a_lost_file_is_reported(tmp_path: Path) -> None:
    settings = BufferSettings(path=tmp_path / "buffer.sqlite3")
    buffer = await Buffer.open(settings)
    frames = FrameBuffer(buffer)
    frames.add([frame("door", n) for n in range(3)])
    await frames.flush()
    await buffer.close()
    spool = tmp_path / "buffer.sqlite3.frames"
    (spool / "0000000000000099.frame.tmp").write_bytes(b"cut short")  # a write a crash cut off
    (spool / "0000000000000098.frame").write_bytes(b"no row")  # written, its row rolled back
    sorted(spool.iterdir())[0].unlink()  # the first frame's file lost (a damaged card)

    reopened = await Buffer.open(settings)
    try:
        again = FrameBuffer(reopened)
        await again.bind_sequence(0)
        assert sorted(p.name for p in spool.iterdir()) == ["0000000000000002.frame", "0000000000000003.frame"]
        # Numbering binds to the server's mark (0): the first frame waiting is frame 1.
        assert [f.sequence for f in await again.read(0, 10, 10**9)] == [1, 2]
        [lost] = await again.pending_thinning()
        assert (lost.camera, lost.count) == ("door", 1)
    finally:
        await reopened.close()
