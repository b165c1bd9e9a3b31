"""The rollups' refresh window follows the raw retention: it reaches back to nearly the oldest
reading ingest accepts (an agent's backlog after a long outage reaches the rollups), and stops a
day short of it (a refresh over dropped raw chunks would delete their buckets)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.maintenance import REFRESH_MARGIN, rollup_refresh_window


@pytest.mark.parametrize("days", [2, 7, 30, 400])
def test_the_refresh_window_starts_a_day_inside_the_raw_retention(days: int) -> None:
    settings = StorageSettings(retention=timedelta(days=days))
    for width, bucket in (("1m", timedelta(minutes=1)), ("1h", timedelta(hours=1))):
        start, end, every = rollup_refresh_window(width, settings)
        assert start == settings.retention - REFRESH_MARGIN == timedelta(days=days - 1)
        assert start - end >= 2 * bucket  # TimescaleDB wants at least two buckets in the window
        assert timedelta(0) < every <= timedelta(hours=1)


def test_a_retention_too_short_for_the_window_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="retention"):
        StorageSettings(retention=timedelta(hours=36))
