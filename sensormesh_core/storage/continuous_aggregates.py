"""TimescaleDB's rollups, refreshed now rather than by their policies.

The refresh policies (maintenance.py) keep the continuous aggregates current in
the background. `sensormesh db refresh-rollups` and the tests need them current
at once: after migration 0005 rebuilt them empty, or before comparing rollups
with the raw rows. The window is the policies' own, so a refresh here
materializes exactly what the policies would, and never reaches the raw chunks
the retention drops (a refresh there would delete their buckets).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.maintenance import rollup_refresh_window
from sensormesh_core.storage.schema import READING_TABLES, ROLLUP_WIDTHS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refreshed:
    """One aggregate refreshed over [start, end)."""

    view: str
    start: datetime
    end: datetime


async def refresh_continuous_aggregates(
    conn: asyncpg.Connection, settings: StorageSettings, now: datetime | None = None
) -> list[Refreshed]:
    """Refresh every `<table>_1m`, then every `<table>_1h` (built on the 1-minute ones).

    `conn` must not be inside a transaction: TimescaleDB refreshes in transactions of its own.
    """
    now = now or datetime.now(UTC)
    done: list[Refreshed] = []
    for width in ROLLUP_WIDTHS:  # "1m" before "1h"
        start_offset, end_offset, _ = rollup_refresh_window(width, settings)
        for table in READING_TABLES:
            view = f"{table}_{width}"
            start, end = now - start_offset, now - end_offset
            await conn.execute(
                "CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)",
                view,
                start,
                end,
            )
            done.append(Refreshed(view, start, end))
    log.info("event=continuous_aggregates_refreshed views=%d", len(done))
    return done
