"""The state of every input, as the server should see it (`InputStatus` in uploads).

The scheduler records successes and failures here; the uplink sends the
statuses that changed since the server last acknowledged them, with the next
batch. Each change bumps a version, so a status lost with a failed stream is
simply sent again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sensormesh.v1.ingest_pb2 import INPUT_STATE_FAILING, INPUT_STATE_OK, InputStatus

MAX_ERROR_CHARS = 1024


@dataclass
class _Entry:
    ok: bool
    last_error: str
    error_count: int
    observe_time_ns: int
    version: int


@dataclass(frozen=True)
class InputHealth:
    """An input's latest state, for the `status` command."""

    ok: bool
    error_count: int
    last_error: str


class StatusBoard:
    """Input name -> its current state, with versions for change tracking."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._version = 0

    def _set(self, name: str, ok: bool, error: str, errors: int) -> None:
        self._version += 1
        self._entries[name] = _Entry(ok, error[:MAX_ERROR_CHARS], errors, time.time_ns(), self._version)

    def succeeded(self, name: str) -> None:
        """Record a successful read; a change only if the input was failing or unknown."""
        entry = self._entries.get(name)
        if entry is None or not entry.ok:
            self._set(name, True, "", entry.error_count if entry else 0)

    def failed(self, name: str, error: str) -> None:
        """Record a failed read (always a change: the count and the message move)."""
        entry = self._entries.get(name)
        self._set(name, False, error, (entry.error_count if entry else 0) + 1)

    def health(self, name: str) -> InputHealth | None:
        """The input's latest state; None before its first read or connection."""
        entry = self._entries.get(name)
        return None if entry is None else InputHealth(entry.ok, entry.error_count, entry.last_error)

    def error_count(self, name: str) -> int:
        entry = self._entries.get(name)
        return entry.error_count if entry else 0

    def changed_since(self, version: int) -> tuple[int, list[InputStatus]]:
        """(current version, statuses changed after `version`) for the next batch."""
        changed = []
        for name, entry in sorted(self._entries.items()):
            if entry.version > version:
                state = INPUT_STATE_OK if entry.ok else INPUT_STATE_FAILING
                status = InputStatus(
                    input=name, state=state, last_error=entry.last_error, error_count=entry.error_count
                )
                status.observe_time.FromNanoseconds(entry.observe_time_ns)
                changed.append(status)
        return self._version, changed
