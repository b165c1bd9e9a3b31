"""A device's commit signals, put back in sequence order before they are delivered.

A device's signals tile its sequence numbers: each covers from the previous
mark + 1 to the new mark (sensormesh_core/storage/live_signal.py). Ingest
replicas send theirs independently, each after its own coalescing window, so
when a gateway's streams move between replicas the signal of its batch N+1
(committed on replica B) can arrive before that of batch N (committed earlier
on replica A). Delivering in arrival order would hand subscribers batch N+1
before batch N.

So per watched device the hub keeps the number through which it has
delivered, and the signals that arrived since, merged where their ranges
adjoin (never across a hole: a merged time range would claim to cover the
hole's readings). The first pending range is read and delivered when it
continues from the delivered number; while a hole lies before it, it is held
until the missing signal arrives, or for at most `wait` seconds, after which
the hole is given up as missed (its signal was lost: a notifier that lost its
connection, a replica that died): subscribers are told how many sequence
numbers they may have missed, the readings themselves are in the tables.

This module is pure bookkeeping (no I/O, no clock of its own), tested with
hypothesis in tests/query_service/test_ordering.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sensormesh_core.storage.live_signal import CommitSignal


@dataclass(frozen=True, slots=True)
class Ready:
    """Read and deliver `signal` now; `missed` numbers before it were given up."""

    signal: CommitSignal
    missed: int = 0


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait up to `seconds` for more signals, then ask again."""

    seconds: float


@dataclass(slots=True)
class DeviceOrder:
    """One watched device: what is delivered and what waits."""

    # Every number through this was delivered, given up, or committed before
    # the first subscription (not owed). None until that first mark is known.
    delivered: int | None = None
    # Signals not delivered yet, disjoint and sorted, none adjoining the next.
    pending: list[CommitSignal] = field(default_factory=list)
    held_since: float | None = None

    def add(self, signal: CommitSignal) -> None:
        ranges = sorted([*self.pending, signal], key=lambda s: s.first_sequence)
        merged = [ranges[0]]
        for item in ranges[1:]:
            if merged[-1].adjoins(item):
                merged[-1] = merged[-1].merge(item)
            else:
                merged.append(item)
        self.pending = merged

    def start_from(self, committed: int) -> None:
        """The device's mark when its first subscription here started (later ones change nothing)."""
        if self.delivered is None:
            self.delivered = committed

    def skip_to(self, committed: int) -> int:
        """After signals were lost wholesale (LISTEN reconnected): continue from `committed`.

        Returns how many numbers were skipped (an upper bound of readings missed).
        """
        if self.delivered is None or committed <= self.delivered:
            return 0
        skipped = committed - self.delivered
        self.delivered = committed
        return skipped

    def next(self, now: float, wait: float) -> Ready | Hold | None:
        """What to do next at time `now` (seconds, any monotonic clock)."""
        delivered = self.delivered
        if delivered is not None:
            # Late, or committed before the first subscription: delivered or not owed.
            self.pending = [s for s in self.pending if s.last_sequence > delivered]
        if not self.pending:
            self.held_since = None
            return None
        head = self.pending[0]
        if delivered is not None and head.first_sequence <= delivered + 1:
            return self._take(replace(head, first_sequence=max(head.first_sequence, delivered + 1)), 0)
        if self.held_since is None:
            self.held_since = now
        remaining = self.held_since + wait - now
        if remaining > 0:
            return Hold(remaining)
        return self._take(head, 0 if delivered is None else head.first_sequence - delivered - 1)

    def _take(self, signal: CommitSignal, missed: int) -> Ready:
        del self.pending[0]
        self.held_since = None
        self.delivered = signal.last_sequence
        return Ready(signal, missed)
