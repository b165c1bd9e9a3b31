"""Stratified thinning: how the buffer stays within its disk budget during a long outage.

Over budget, the buffer drops every other reading of each sensor in the
oldest half of what it holds, keeping the newest half intact. Repeated
passes thin the old data again, so density falls with age (1/2, 1/4, ...)
instead of the oldest hours vanishing as a block: a week-long outage still
leaves a picture of the whole week, with full detail for the most recent part.

Deleting every other row frees no SQLite pages (each page just becomes half
empty, and new rows are appended elsewhere), so each slice is rewritten:
the survivors are copied out, the slice deleted (whole pages go to the free
list) and the survivors written back densely. Every slice is one
transaction that also records what it dropped, per sensor (count, first and
last sample time), so a crash mid-pass leaves a consistent buffer and an
exact report.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SLICE_IDS = 10_000  # rows rewritten per transaction: bounds the WAL's growth and the lock time

_RANKED = """
    WITH ranked AS (
        SELECT id, sensor_id, sample_time_ns, payload,
               row_number() OVER (PARTITION BY sensor_id ORDER BY id) AS rank
        FROM readings WHERE id >= :low AND id < :high
    )
"""


@dataclass(frozen=True)
class ThinningPass:
    """What one pass dropped."""

    dropped: int
    used_bytes_after: int


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database file in use (allocated pages minus the free list)."""
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((page_count - free_pages) * page_size)


def _thin_slice(conn: sqlite3.Connection, low: int, high: int) -> int:
    bounds = {"low": low, "high": high}
    with conn:
        conn.execute(
            _RANKED
            + """
            INSERT INTO thinned (sensor, count, first_sample_time_ns, last_sample_time_ns)
            SELECT sensors.name, count(*), min(sample_time_ns), max(sample_time_ns)
            FROM ranked JOIN sensors ON sensors.id = ranked.sensor_id
            WHERE rank % 2 = 0 GROUP BY sensors.name
            """,
            bounds,
        )
        conn.execute("DROP TABLE IF EXISTS temp.survivors")
        conn.execute(
            "CREATE TEMP TABLE survivors AS "
            + _RANKED
            + "SELECT id, sensor_id, sample_time_ns, payload FROM ranked WHERE rank % 2 = 1",
            bounds,
        )
        dropped = conn.execute("DELETE FROM readings WHERE id >= :low AND id < :high", bounds).rowcount
        kept = conn.execute("INSERT INTO readings SELECT * FROM temp.survivors ORDER BY id").rowcount
        conn.execute("DROP TABLE temp.survivors")
    return int(dropped - kept)


def thin_oldest_half(conn: sqlite3.Connection, above_id: int = 0) -> ThinningPass:
    """Drop every other reading per sensor among the oldest half of the buffered readings
    numbered above `above_id`.

    The buffer passes the last row it handed to the uplink: those readings may
    already be stored on the server (a stream in flight, an acknowledgement not
    yet received), and thinning them would report as lost readings that were not.
    """
    count, first = conn.execute("SELECT count(*), min(id) FROM readings WHERE id > ?", (above_id,)).fetchone()
    if count < 4:
        return ThinningPass(0, used_bytes(conn))
    cut = conn.execute(
        "SELECT id FROM readings WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (above_id, count // 2)
    ).fetchone()[0]
    dropped = 0
    for low in range(first, cut, SLICE_IDS):
        dropped += _thin_slice(conn, low, min(low + SLICE_IDS, cut))
    return ThinningPass(dropped, used_bytes(conn))
