"""Input settings changed by command (`set_interval`, `enable_input`, `disable_input`), kept across restarts.

An operator who slows an input down or switches one off expects it to stay
that way after a reboot, so each change is committed to the agent's SQLite
file (gateway_agent/commands/store.py) before the command answers, and the
agent applies the stored ones when it starts.

agent.toml stays the source of an input's interval: an override remembers the
interval the file gave when it was made, and when the file says something else
at start (someone edited it since), the file wins and the override is dropped
(logged). `enabled` has no counterpart in the file, so it holds until the
next enable_input / disable_input. Overrides of inputs no longer configured
are ignored and kept (the input may come back).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway_agent.commands.store import StateStore

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS input_overrides (
    input TEXT PRIMARY KEY,
    interval_s REAL,
    configured_interval_s REAL,
    enabled INTEGER NOT NULL DEFAULT 1,
    change_time_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class InputOverride:
    """What commands changed of one input."""

    input: str
    interval_s: float | None  # None: the configured interval
    configured_interval_s: float | None  # the file's interval when interval_s was set
    enabled: bool


class InputOverrides:
    """The stored overrides; open with `await InputOverrides.open(store)`."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    @classmethod
    async def open(cls, store: StateStore) -> InputOverrides:
        await store.run(lambda conn: conn.executescript(_SCHEMA))
        return cls(store)

    async def load(self) -> dict[str, InputOverride]:
        def load(conn: sqlite3.Connection) -> dict[str, InputOverride]:
            rows = conn.execute(
                "SELECT input, interval_s, configured_interval_s, enabled FROM input_overrides"
            ).fetchall()
            return {row[0]: InputOverride(row[0], row[1], row[2], bool(row[3])) for row in rows}

        return await self._store.run(load)

    async def set_interval(self, name: str, seconds: float | None, configured_s: float | None) -> None:
        """Keep `seconds` as `name`'s interval (None: back to the file's), noting the file's value."""
        await self._upsert(
            name,
            "interval_s = excluded.interval_s, configured_interval_s = excluded.configured_interval_s",
            seconds, configured_s, 1,
        )  # fmt: skip

    async def set_enabled(self, name: str, enabled: bool) -> None:
        await self._upsert(name, "enabled = excluded.enabled", None, None, int(enabled))

    async def _upsert(
        self, name: str, update: str, interval_s: float | None, configured_s: float | None, enabled: int
    ) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT INTO input_overrides (input, interval_s, configured_interval_s, enabled, change_time_ns)"
                    f" VALUES (?, ?, ?, ?, ?) ON CONFLICT (input) DO UPDATE SET {update},"
                    " change_time_ns = excluded.change_time_ns",
                    (name, interval_s, configured_s, enabled, time.time_ns()),
                )

        await self._store.run(upsert)


@dataclass(frozen=True)
class Applied:
    """What the stored overrides come to at start."""

    intervals: dict[str, float]  # seconds per input whose interval a command changed
    disabled: frozenset[str]  # inputs a command switched off
    dropped: tuple[str, ...]  # interval overrides the edited file outranks (clear them)


def effective(overrides: Mapping[str, InputOverride], configured: Mapping[str, float | None]) -> Applied:
    """What to apply at start, from the stored overrides and the file's intervals (`configured`:
    seconds per configured input, None for a streaming one)."""
    intervals: dict[str, float] = {}
    disabled: set[str] = set()
    dropped: list[str] = []
    for name, override in sorted(overrides.items()):
        if name not in configured:
            continue
        if not override.enabled:
            disabled.add(name)
        file_s = configured[name]
        if override.interval_s is None or file_s is None:
            continue
        if override.configured_interval_s is not None and not math.isclose(
            override.configured_interval_s, file_s
        ):
            log.warning(
                "event=input_override_dropped input=%s interval_seconds=%g reason=config_changed config_seconds=%g",
                name, override.interval_s, file_s,
            )  # fmt: skip
            dropped.append(name)
            continue
        intervals[name] = override.interval_s
    for name in sorted(set(intervals) | disabled):
        log.info(
            "event=input_override_applied input=%s interval_seconds=%s enabled=%s",
            name, intervals.get(name, configured[name]), str(name not in disabled).lower(),
        )  # fmt: skip
    return Applied(intervals, frozenset(disabled), tuple(dropped))
