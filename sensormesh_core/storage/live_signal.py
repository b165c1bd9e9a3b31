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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

CHANNEL = "sensormesh_readings"
MAX_PAYLOAD_BYTES = 7999


@dataclass(frozen=True, slots=True)
class CommitSignal:
    """Readings of `device_id` numbered first..last_sequence with sample times
    in [first_time, last_time] are committed."""

    device_id: str
    first_sequence: int
    last_sequence: int
    first_time: datetime
    last_time: datetime

    def merge(self, other: CommitSignal) -> CommitSignal:
        """One signal covering both (same device): used to coalesce."""
        if other.device_id != self.device_id:
            raise ValueError("cannot merge signals of different devices")
        return CommitSignal(
            self.device_id,
            min(self.first_sequence, other.first_sequence),
            max(self.last_sequence, other.last_sequence),
            min(self.first_time, other.first_time),
            max(self.last_time, other.last_time),
        )

    def encode(self) -> str:
        payload = json.dumps(
            {
                "d": self.device_id,
                "s": [self.first_sequence, self.last_sequence],
                "t": [_micros(self.first_time), _micros(self.last_time)],
            },
            separators=(",", ":"),
        )
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError("signal payload exceeds NOTIFY's limit")
        return payload

    @classmethod
    def decode(cls, payload: str) -> CommitSignal:
        """Parse a payload; raises ValueError on anything malformed."""
        try:
            data = json.loads(payload)
            first_seq, last_seq = (int(x) for x in data["s"])
            first_us, last_us = (int(x) for x in data["t"])
            device_id = str(data["d"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed commit signal: {payload[:100]!r}") from exc
        return cls(device_id, first_seq, last_seq, _from_micros(first_us), _from_micros(last_us))


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_micros(value: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=value)
