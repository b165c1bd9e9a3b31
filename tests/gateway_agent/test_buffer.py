"""The SQLite buffer: durability across kill -9, restart with a backlog, numbering, thinning."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway_agent.buffer import Buffer, BufferSettings, Record

ROOT = Path(__file__).resolve().parents[2]


def records(start: int, count: int, sensor: str = "imu", step_ns: int = 10_000_000) -> list[Record]:
    return [
        Record(sensor, 10**18 + i * step_ns, i.to_bytes(8, "big") + b"x" * 40)
        for i in range(start, start + count)
    ]


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = await Buffer.open(
        BufferSettings(path=tmp_path / "buffer.sqlite3", commit_interval=timedelta(seconds=30))
    )
    await buf.bind_sequence(0)
    yield buf
    await buf.close()


async def test_readings_are_invisible_until_committed_then_numbered_in_order(buffer: Buffer) -> None:
    buffer.add(records(0, 10))
    assert await buffer.read(0, 100) == []
    assert await buffer.flush() == 10
    stored = await buffer.read(0, 100)
    assert [s.sequence for s in stored] == list(range(1, 11))
    assert [int.from_bytes(s.payload[:8], "big") for s in stored] == list(range(10))
    assert [s.sequence for s in await buffer.read(7, 2)] == [8, 9]


async def test_group_commit_happens_when_enough_readings_wait(tmp_path: Path) -> None:
    settings = BufferSettings(
        path=tmp_path / "b.sqlite3", commit_interval=timedelta(seconds=60), commit_max_readings=100
    )
    buf = await Buffer.open(settings)
    await buf.bind_sequence(0)
    try:
        buf.add(records(0, 150))
        async with asyncio.timeout(10):
            await buf.wait_for_data(149)
        assert buf.last_sequence == 150
    finally:
        await buf.close()


async def test_restart_with_a_backlog_keeps_readings_and_never_reuses_numbers(tmp_path: Path) -> None:
    settings = BufferSettings(path=tmp_path / "b.sqlite3")
    first = await Buffer.open(settings)
    await first.bind_sequence(0)
    first.add(records(0, 1000))
    await first.flush()
    await first.forget_through(600)
    await first.close()

    second = await Buffer.open(settings)
    try:
        await second.bind_sequence(600)  # the server's mark after the first life
        backlog = await second.read(600, 10_000)
        assert [s.sequence for s in backlog] == list(range(601, 1001))
        assert int.from_bytes(backlog[0].payload[:8], "big") == 600
        await second.forget_through(1000)
        second.add(records(1000, 5))
        await second.flush()
        assert [s.sequence for s in await second.read(1000, 10)] == [1001, 1002, 1003, 1004, 1005]
    finally:
        await second.close()


async def test_a_fresh_buffer_continues_above_the_servers_mark(buffer: Buffer) -> None:
    buffer.add(records(0, 3))  # taken offline, before the first contact
    await buffer.flush()
    await buffer.bind_sequence(0)  # already bound by the fixture: no effect
    assert buffer.last_sequence == 3

    fresh = await Buffer.open(BufferSettings(path=buffer.settings.path.with_name("fresh.sqlite3")))
    try:
        fresh.add(records(0, 3))
        await fresh.flush()
        await fresh.bind_sequence(5000)  # e.g. a replaced SD card on a device that uploaded before
        assert [s.sequence for s in await fresh.read(5000, 10)] == [5001, 5002, 5003]
    finally:
        await fresh.close()


async def test_a_server_mark_ahead_of_the_buffer_renumbers_pending_readings_above_it(buffer: Buffer) -> None:
    buffer.add(records(0, 4))
    await buffer.flush()
    await buffer.bind_sequence(100)
    assert [s.sequence for s in await buffer.read(100, 10)] == [101, 102, 103, 104]


def test_kill_9_while_writing_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway_agent.buffer_writer", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    last_committed = 0
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while last_committed < 20_000 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            last_committed = int(line)
    finally:
        os.kill(process.pid, signal.SIGKILL)  # mid-write: the writer never pauses
        process.wait(timeout=30)
    assert last_committed >= 20_000, "the writer did not commit fast enough"

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT id, payload FROM readings ORDER BY id").fetchall()
    finally:
        conn.close()
    assert len(rows) >= last_committed
    # Every committed reading is there, in order, numbered without gaps or repeats.
    assert [row_id for row_id, _ in rows] == list(range(1, len(rows) + 1))
    assert [int.from_bytes(payload, "big") for _, payload in rows] == list(range(len(rows)))


async def test_over_budget_thins_the_oldest_half_evenly_and_reports_it(tmp_path: Path) -> None:
    budget = 2 * 1024 * 1024
    buf = await Buffer.open(
        BufferSettings(path=tmp_path / "b.sqlite3", disk_budget=budget, commit_max_readings=5000)
    )
    await buf.bind_sequence(0)
    try:
        total_imu = 0
        for chunk in range(12):  # ~100 bytes a row: ~6 MB of 100 Hz IMU plus a 1 Hz sensor, 3x the budget
            start = chunk * 5000
            buf.add(records(start, 5000, "imu", step_ns=10_000_000) + records(start // 100, 50, "env", 10**9))
            total_imu += 5000
            await buf.flush()
        stats = await buf.stats()
        assert stats.used_bytes <= budget
        assert stats.thinned_total > 0

        kept = await buf.read(0, 1_000_000)
        conn = sqlite3.connect(buf.settings.path)
        sensor_of = dict(
            conn.execute("SELECT r.id, s.name FROM readings r JOIN sensors s ON s.id = r.sensor_id")
        )
        conn.close()
        imu = [int.from_bytes(s.payload[:8], "big") for s in kept if sensor_of[s.sequence] == "imu"]
        # The newest readings are intact: the last 5000 IMU readings are all there.
        assert imu[-5000:] == list(range(total_imu - 5000, total_imu))
        # The oldest are thinned evenly, not dropped as a block: the first hour still has readings
        # throughout, with no gap longer than a few samples.
        assert imu[0] < 10
        gaps = [b - a for a, b in itertools.pairwise(imu)]
        assert max(gaps) <= 16

        reports = {t.sensor: t for t in await buf.pending_thinning()}
        assert set(reports) == {"imu", "env"}
        assert reports["imu"].count == total_imu - len(imu)
        env_kept = sum(1 for s in kept if sensor_of[s.sequence] == "env")
        assert reports["env"].count == 600 - env_kept
        assert reports["imu"].first_sample_time_ns >= 10**18
        assert reports["imu"].last_sample_time_ns < 10**18 + (total_imu - 5000) * 10_000_000
    finally:
        await buf.close()


async def test_readings_read_for_the_uplink_are_never_thinned(tmp_path: Path) -> None:
    """They may be stored on the server already (a stream in flight, an ack not yet back):
    thinning them would report as lost readings that were not."""
    buf = await Buffer.open(BufferSettings(path=tmp_path / "b.sqlite3", disk_budget=2 * 1024 * 1024))
    await buf.bind_sequence(0)
    try:
        buf.add(records(0, 5000))
        await buf.flush()
        in_flight = await buf.read(0, 4000)
        for chunk in range(1, 8):  # past the budget: the oldest half of the rest is thinned, repeatedly
            buf.add(records(chunk * 5000, 5000))
            await buf.flush()
        assert (await buf.stats()).thinned_total > 0
        kept = [s.sequence for s in await buf.read(0, 1_000_000)]
        assert kept[:4000] == [s.sequence for s in in_flight] == list(range(1, 4001))
        (report,) = await buf.pending_thinning()
        assert report.count == 40_000 - len(kept)
    finally:
        await buf.close()


async def test_readings_of_a_failed_commit_stay_queued_and_commit_with_the_next(
    buffer: Buffer, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = buffer._commit
    failures = iter([sqlite3.OperationalError("disk I/O error")])

    def failing_once(*args: object) -> int:
        error = next(failures, None)
        if error is not None:
            raise error
        return commit(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(buffer, "_commit", failing_once)
    buffer.add(records(0, 10))
    with pytest.raises(sqlite3.OperationalError):
        await buffer.flush()
    buffer.add(records(10, 5))
    assert await buffer.flush() == 15
    kept = await buffer.read(0, 100)
    assert [int.from_bytes(s.payload[:8], "big") for s in kept] == list(range(15))  # in order, none lost


async def test_readings_refused_while_the_disk_stalls_are_reported_upstream(tmp_path: Path) -> None:
    buf = await Buffer.open(
        BufferSettings(path=tmp_path / "b.sqlite3", max_uncommitted=1000, commit_interval=timedelta(hours=1))
    )
    await buf.bind_sequence(0)
    try:
        buf.add(records(0, 900, "imu"))
        buf.add(records(900, 150, "imu") + records(0, 20, "env", 10**9))  # 70 do not fit
        assert buf.dropped_in_memory == 70
        await buf.flush()
        (env, imu) = await buf.pending_thinning()
        assert (env.sensor, env.count, imu.sensor, imu.count) == ("env", 20, "imu", 50)
        assert imu.first_sample_time_ns == 10**18 + 1000 * 10_000_000
        assert env.last_sample_time_ns == 10**18 + 19 * 10**9
        assert len(await buf.read(0, 10_000)) == 1000
    finally:
        await buf.close()


async def test_thinning_reports_are_forgotten_only_with_the_ack_of_the_batch_that_carried_them(
    tmp_path: Path,
) -> None:
    buf = await Buffer.open(BufferSettings(path=tmp_path / "b.sqlite3", disk_budget=2 * 1024 * 1024))
    await buf.bind_sequence(0)
    try:
        for chunk in range(8):
            buf.add(records(chunk * 5000, 5000))
            await buf.flush()
        reports = await buf.pending_thinning()
        assert len(reports) == 1
        await buf.mark_thinning_sent(reports, sequence=30_000)
        await buf.forget_through(29_999)
        assert len(await buf.pending_thinning()) == 1
        await buf.forget_through(30_000)
        assert await buf.pending_thinning() == []
    finally:
        await buf.close()


def test_sequence_counter_survives_in_sqlite_sequence(tmp_path: Path) -> None:
    async def scenario() -> Counter[int]:
        settings = BufferSettings(path=tmp_path / "b.sqlite3")
        buf = await Buffer.open(settings)
        await buf.bind_sequence(0)
        buf.add(records(0, 5))
        await buf.flush()
        await buf.forget_through(5)
        await buf.close()
        buf = await Buffer.open(settings)
        await buf.bind_sequence(5)
        buf.add(records(5, 1))
        await buf.flush()
        seqs = Counter(s.sequence for s in await buf.read(0, 10))
        await buf.close()
        return seqs

    assert asyncio.run(scenario()) == Counter({6: 1})
