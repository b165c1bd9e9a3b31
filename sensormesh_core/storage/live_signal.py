"""The "new readings committed" signal from ingest to every query process.

PostgreSQL LISTEN/NOTIFY carries it: no broker of ours, and every query
replica that LISTENs hears every ingest replica. A signal names what was
committed, not the data: the device, the sequence range and the sample-time
range of one or more committed batches. A query process with subscribers for
that device reads exactly those rows back with the (sensor_id, time) index
and a `sequence BETWEEN` filter.

NOTIFY's limits shape the protocol (see DESIGN.md): a NOTIFY inside the data
transaction takes a cluster-wide lock at commit, so ingest sends signals
after commit, from its own connection, coalesced per device over a short
window; and payloads stop at 8,000 bytes, so a signal is a few numbers.
Signals are a hint for live feeds, not part of exactly-once delivery: one
lost in a crash only means a live subscriber misses readings that are stored.

A device's signals tile its sequence numbers: each covers from the device's
previous mark + 1 to its new mark (numbers in between that have no row were
thinned, skipped or refused), and a commit that moves the mark without
storing a row (every reading refused) is signalled too, without a time range.
So a query process knows when a signal is missing: two signals of a device
from two ingest replicas can arrive in either order, and it waits for the
earlier one before delivering the later (query_service/live/ordering.py).

`DeviceDeleted` goes out on the same channel when a device is deleted, so
live feeds of that device end instead of outliving it.

Camera frames have their own channel, `FRAMES_CHANNEL`, with the same
messages: a frame commit's signal names the device's frame sequence range
(its own numbering) and capture-time range, so the frame feeds' hub reads
exactly those frames back, and nothing on the readings' channel changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

CHANNEL = "sensormesh_readings"
FRAMES_CHANNEL = "sensormesh_frames"
MAX_PAYLOAD_BYTES = 7999


@dataclass(frozen=True, slots=True)
class CommitSignal:
    """The device's mark moved from `first_sequence - 1` to `last_sequence`: every
    reading of `device_id` numbered first..last_sequence is committed, with
    sample times in [first_time, last_time]. Both times are None when no row
    was stored (every reading of the range was refused)."""

    device_id: str
    first_sequence: int
    last_sequence: int
    first_time: datetime | None
    last_time: datetime | None

    @property
    def has_rows(self) -> bool:
        return self.first_time is not None

    def adjoins(self, other: CommitSignal) -> bool:
        """Whether the two ranges overlap or touch (one signal can then stand for both)."""
        return (
            other.device_id == self.device_id
            and other.first_sequence <= self.last_sequence + 1
            and self.first_sequence <= other.last_sequence + 1
        )

    def merge(self, other: CommitSignal) -> CommitSignal:
        """One signal covering both (same device, ranges that adjoin): used to coalesce.

        Signals with a hole between them are never merged: the merged time range
        would claim to cover the hole's readings, which it knows nothing of.
        """
        if other.device_id != self.device_id:
            raise ValueError("cannot merge signals of different devices")
        if not self.adjoins(other):
            raise ValueError("cannot merge signals with a hole between them")
        return CommitSignal(
            self.device_id,
            min(self.first_sequence, other.first_sequence),
            max(self.last_sequence, other.last_sequence),
            _either(min, self.first_time, other.first_time),
            _either(max, self.last_time, other.last_time),
        )

    def encode(self) -> str:
        data: dict[str, object] = {"d": self.device_id, "s": [self.first_sequence, self.last_sequence]}
        if self.first_time is not None and self.last_time is not None:
            data["t"] = [_micros(self.first_time), _micros(self.last_time)]
        payload = json.dumps(data, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError("signal payload exceeds NOTIFY's limit")
        return payload

    @classmethod
    def decode(cls, payload: str) -> CommitSignal:
        """Parse a payload; raises ValueError on anything malformed."""
        signal = decode(payload)
        if not isinstance(signal, CommitSignal):
            raise ValueError(f"not a commit signal: {payload[:100]!r}")
        return signal


@dataclass(frozen=True, slots=True)
class DeviceDeleted:
    """`device_id` was deleted (sent inside the deleting transaction, so heard only once it commits)."""

    device_id: str

    def encode(self) -> str:
        return json.dumps({"d": self.device_id, "deleted": True}, separators=(",", ":"))


def decode(payload: str) -> CommitSignal | DeviceDeleted:
    """Parse any payload of the channel; raises ValueError on anything malformed."""
    try:
        data = json.loads(payload)
        device_id = data["d"]
        if not isinstance(device_id, str):
            raise TypeError("device id")
        if data.get("deleted") is True:
            return DeviceDeleted(device_id)
        first_seq, last_seq = (int(x) for x in data["s"])
        times = data.get("t")
        if times is None:
            return CommitSignal(device_id, first_seq, last_seq, None, None)
        first_us, last_us = (int(x) for x in times)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed commit signal: {payload[:100]!r}") from exc
    return CommitSignal(device_id, first_seq, last_seq, _from_micros(first_us), _from_micros(last_us))


def _either(
    pick: Callable[[datetime, datetime], datetime], a: datetime | None, b: datetime | None
) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_micros(value: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=value)
