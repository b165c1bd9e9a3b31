"""The command journal and the input overrides: their moves, recovery, pruning, and sharing the
buffer's file with the buffer."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from gateway_agent.buffer import Buffer, BufferSettings
from gateway_agent.commands.input_overrides import InputOverride, InputOverrides, effective
from gateway_agent.commands.journal import PRUNE_AFTER_NS, CommandJournal, EntryState, Outcome
from gateway_agent.commands.store import StateStore
from tests.gateway_agent.conftest import imu_records


async def open_journal(path: Path) -> tuple[StateStore, CommandJournal]:
    store = await StateStore.open(path)
    return store, await CommandJournal.open(store)


async def test_a_command_moves_only_forward(tmp_path: Path) -> None:
    store, journal = await open_journal(tmp_path / "buffer.sqlite3")
    try:
        first = await journal.receive(5, "valve", {"position": "open"}, 30.0)
        again = await journal.receive(5, "other", {}, 1.0)  # offered again: the first record stands
        assert first == again
        assert (first.state, first.parameters, first.result_timeout_s) == (
            EntryState.RECEIVED,
            {"position": "open"},
            30.0,
        )
        assert await journal.start(5)
        assert not await journal.start(5)  # running already: never started twice
        assert not await journal.withdraw(5)  # too late to withdraw
        outcome = Outcome(True, {"moved": True}, "", 1_767_225_600 * 10**9)
        assert await journal.finish(5, outcome)
        assert not await journal.finish(5, Outcome(False, error="again"))  # the first result stands
        entry = await journal.get(5)
        assert entry is not None and entry.outcome == outcome and not entry.reported
        assert [e.command_id for e in await journal.unreported()] == [5]
        assert await journal.mark_reported(5)
        assert await journal.unreported() == []
        await journal.receive(6, "valve", {}, 30.0)
        assert await journal.withdraw(6)
        assert not await journal.start(6)  # withdrawn: never runs
    finally:
        await store.close()


async def test_rows_running_at_start_are_the_previous_process_and_become_failures(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    store, journal = await open_journal(path)
    await journal.receive(1, "a", {}, 60.0)
    await journal.start(1)
    await journal.receive(2, "b", {}, 60.0)  # only received: left alone
    await store.close()
    store, journal = await open_journal(path)  # "after the crash"
    try:
        [recovered] = await journal.recover_interrupted("it may have run partly")
        assert recovered.command_id == 1 and recovered.state is EntryState.FINISHED
        assert recovered.outcome is not None and not recovered.outcome.succeeded
        assert recovered.outcome.error == "it may have run partly"
        assert (await journal.get(2)).state is EntryState.RECEIVED  # type: ignore[union-attr]
        assert await journal.recover_interrupted("again") == []
    finally:
        await store.close()


async def test_prune_keeps_what_the_service_still_needs(tmp_path: Path) -> None:
    store, journal = await open_journal(tmp_path / "buffer.sqlite3")
    try:
        for command_id in (1, 2, 3, 4):
            await journal.receive(command_id, "x", {}, 60.0)
        await journal.start(1)
        await journal.finish(1, Outcome(True))
        await journal.mark_reported(1)  # reported: prunable
        await journal.start(2)
        await journal.finish(2, Outcome(True))  # not reported yet: kept however old
        await journal.withdraw(3)  # withdrawn: prunable
        # 4: received and never told to run: prunable
        assert await journal.prune() == 0  # nothing is a week old yet
        assert await journal.prune(now_ns=time.time_ns() + PRUNE_AFTER_NS + 10**9) == 3
        assert [e.command_id for e in await journal.unreported()] == [2]
    finally:
        await store.close()


async def test_the_journal_shares_the_buffer_file_while_readings_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    buffer = await Buffer.open(BufferSettings(path=path, commit_interval=timedelta(milliseconds=5)))
    store, journal = await open_journal(path)
    try:
        await buffer.bind_sequence(0)

        async def readings() -> None:
            for start in range(0, 4000, 200):
                buffer.add(imu_records(start, 200))
                await buffer.flush()

        async def commands() -> None:
            for command_id in range(1, 101):
                await journal.receive(command_id, "ping", {}, 60.0)
                await journal.start(command_id)
                await journal.finish(command_id, Outcome(True))

        await asyncio.gather(readings(), commands())
        assert (await buffer.stats()).pending == 4000
        assert len(await journal.unreported()) == 100
    finally:
        await store.close()
        await buffer.close()


async def test_input_overrides_persist_and_an_edited_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    store = await StateStore.open(path)
    overrides = await InputOverrides.open(store)
    await overrides.set_interval("env", 0.5, 2.0)
    await overrides.set_enabled("imu", False)
    await overrides.set_enabled("env", True)
    await store.close()
    store = await StateStore.open(path)
    try:
        stored = await (await InputOverrides.open(store)).load()
        assert stored == {
            "env": InputOverride("env", 0.5, 2.0, enabled=True),
            "imu": InputOverride("imu", None, None, enabled=False),
        }
        kept = effective(stored, {"env": 2.0, "imu": 0.01})
        assert (kept.intervals, kept.disabled, kept.dropped) == ({"env": 0.5}, {"imu"}, ())
        edited = effective(stored, {"env": 5.0, "imu": 0.01})  # someone edited agent.toml since
        assert (edited.intervals, edited.dropped) == ({}, ("env",))
        gone = effective(stored, {"other": 1.0})  # inputs no longer configured are ignored
        assert (gone.intervals, gone.disabled) == ({}, frozenset())
    finally:
        await store.close()
