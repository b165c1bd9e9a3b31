"""The commit signal's wire form and coalescing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensormesh_core.storage.live_signal import CommitSignal, DeviceDeleted, decode

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)

times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(
    device=st.from_regex(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", fullmatch=True),
    first=st.integers(1, 2**63 - 1),
    span=st.integers(0, 10_000),
    t0=times,
    t1=times,
)
def test_encode_decode_round_trips(device: str, first: int, span: int, t0: datetime, t1: datetime) -> None:
    signal = CommitSignal(device, first, first + span, min(t0, t1), max(t0, t1))
    assert CommitSignal.decode(signal.encode()) == signal
    assert len(signal.encode()) < 200


def test_merge_covers_both_ranges() -> None:
    a = CommitSignal("pi-1", 10, 20, T0, T0 + timedelta(seconds=1))
    b = CommitSignal("pi-1", 21, 40, T0 - timedelta(seconds=5), T0 + timedelta(seconds=2))
    assert a.merge(b) == CommitSignal("pi-1", 10, 40, T0 - timedelta(seconds=5), T0 + timedelta(seconds=2))
    with pytest.raises(ValueError, match="different devices"):
        a.merge(CommitSignal("pi-2", 1, 2, T0, T0))
    # Another replica's commit lies between: its readings' times are not these.
    with pytest.raises(ValueError, match="hole"):
        a.merge(CommitSignal("pi-1", 22, 40, T0, T0))
    assert a.adjoins(CommitSignal("pi-1", 15, 25, T0, T0)) and not a.adjoins(
        CommitSignal("pi-1", 1, 8, T0, T0)
    )


@pytest.mark.parametrize(
    "payload", ["", "{}", "not json", '{"d":"x","s":[1],"t":[1,2]}', '{"d":"x","s":"ab","t":[1,2]}']
)
def test_malformed_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        CommitSignal.decode(payload)


def test_a_signal_without_rows_round_trips_and_merges() -> None:
    empty = CommitSignal("pi-1", 21, 22, None, None)
    assert CommitSignal.decode(empty.encode()) == empty and not empty.has_rows
    rows = CommitSignal("pi-1", 23, 30, T0, T0 + timedelta(seconds=1))
    assert empty.merge(rows) == CommitSignal("pi-1", 21, 30, T0, T0 + timedelta(seconds=1))
    assert rows.merge(empty) == empty.merge(rows)


def test_device_deleted_shares_the_channel() -> None:
    message = DeviceDeleted("pi-1")
    assert decode(message.encode()) == message
    assert decode(CommitSignal("pi-1", 1, 2, T0, T0).encode()) == CommitSignal("pi-1", 1, 2, T0, T0)
    with pytest.raises(ValueError, match="not a commit signal"):
        CommitSignal.decode(message.encode())
