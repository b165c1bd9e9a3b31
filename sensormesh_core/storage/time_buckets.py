"""Epoch-aligned buckets, as TimescaleDB's `time_bucket` and `date_bin(..., 'epoch')` cut time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_to(moment: datetime, interval: timedelta) -> datetime:
    """The start of the epoch-aligned bucket of `interval` holding `moment`."""
    return EPOCH + ((moment - EPOCH) // interval) * interval


def ceil_to(moment: datetime, interval: timedelta) -> datetime:
    """The first bucket start of `interval` at or after `moment`."""
    floored = floor_to(moment, interval)
    return floored if floored == moment else floored + interval
