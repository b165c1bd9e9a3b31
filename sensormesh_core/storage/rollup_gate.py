"""How writers and the rollup refresher agree on what is materialized (plain PostgreSQL).

The refresher materializes buckets up to a horizon and moves a watermark
there. A writer's transaction that commits rows below the watermark after the
refresher took its snapshot would be lost to the rollups, so:

- every writer's batch transaction first takes the gate, an advisory lock, in
  shared mode, and reads the database clock *after* getting it
  (`GATE_CTE`); rows older than that clock minus `RECENT` are late: the
  writer records their (table, key, first, last) in `rollup_invalidations` in
  the same transaction (`INSERT_INVALIDATIONS`);
- the refresher takes the gate in exclusive mode, which waits until every
  writer transaction that holds it has committed (or rolled back), reads the
  clock, releases the gate, and only then takes the snapshot it materializes
  from, up to `horizon(clock)` = the clock minus `REFRESH_LAG`.

A writer either held the gate before the refresher got it, and then its rows
are committed and visible to the refresher's snapshot; or it got the gate
afterwards, read a later clock, and everything below the refresher's horizon
is older than its own clock minus `RECENT` (`REFRESH_LAG` > `RECENT`), so it
recorded an invalidation that the next refresh applies. Both sides read the
same clock (the database server's), so the application hosts' clocks do not
matter; the minute between `RECENT` and `REFRESH_LAG` absorbs a step back of
the server's clock. An invalidation and its rows commit together, so a
refresher that sees the one sees the other.

Shared advisory locks live in the lock manager's memory: taking one costs a
writer no disk write and no extra round trip (it is folded into the
statement that locks the device's upload offset). Writers never wait on each
other for it, only for the refresher's brief exclusive hold (bounded by its
lock timeout) once a minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from typing import Any

import asyncpg

# "sensormesh rollup gate" as an advisory lock key (0x5E45_0001 migrations, _0002 partitions).
GATE_LOCK_KEY = 0x5E45_0003

# A writer records no invalidation for rows newer than the database clock minus this.
RECENT = timedelta(minutes=2)
# The refresher materializes only buckets that end before its clock minus this.
REFRESH_LAG = timedelta(minutes=3)
assert REFRESH_LAG > RECENT

# A common table expression for the first statement of a writer's transaction:
# `gate.now` is the database clock read after the shared gate was granted (the
# OFFSET 0 subquery is evaluated first and is never flattened into its parent).
GATE_CTE = (
    "gate AS MATERIALIZED (SELECT clock_timestamp() AS now FROM "
    f"(SELECT pg_advisory_xact_lock_shared({GATE_LOCK_KEY}) OFFSET 0) AS locked)"
)

INSERT_INVALIDATIONS = (
    "INSERT INTO rollup_invalidations (source_table, key, first_time, last_time) "
    "SELECT * FROM unnest($1::text[], $2::integer[], $3::timestamptz[], $4::timestamptz[])"
)

# Position of time and of the series key (sensor_id or series_id) in every reading row.
TIME_INDEX = 0
KEY_INDEX = 2
_time_of = itemgetter(TIME_INDEX)
_key_of = itemgetter(KEY_INDEX)


@dataclass(frozen=True, slots=True)
class LateRange:
    """Rows of one key of one reading table, between two times (inclusive), written late."""

    table: str
    key: int
    first_time: Any  # whatever the rows carry: datetime, or ingest's integer microseconds
    last_time: Any


def late_ranges(rows_by_table: Mapping[str, Sequence[Sequence[Any]]], horizon: Any) -> list[LateRange]:
    """Per table and key, the first and last time of the rows older than `horizon`.

    A batch's table usually holds one key (a device's IMU, say): that case
    takes a few passes at C speed (itemgetter, min, max) instead of a Python loop.
    """
    found: list[LateRange] = []
    for table, rows in rows_by_table.items():
        keys = set(map(_key_of, rows))
        if len(keys) == 1:
            times = list(map(_time_of, rows))
            if max(times) >= horizon:
                times = [t for t in times if t < horizon]
            if times:
                found.append(LateRange(table, keys.pop(), min(times), max(times)))
            continue
        spans: dict[int, list[Any]] = {}
        for row in rows:
            moment = row[TIME_INDEX]
            if moment < horizon:
                span = spans.get(row[KEY_INDEX])
                if span is None:
                    spans[row[KEY_INDEX]] = [moment, moment]
                elif moment < span[0]:
                    span[0] = moment
                elif moment > span[1]:
                    span[1] = moment
        found += [LateRange(table, key, first, last) for key, (first, last) in spans.items()]
    return found


async def record_late(conn: asyncpg.Connection, ranges: Sequence[LateRange]) -> None:
    """Record `ranges` in `rollup_invalidations`, in the caller's transaction."""
    if ranges:
        await conn.execute(
            INSERT_INVALIDATIONS,
            [r.table for r in ranges],
            [r.key for r in ranges],
            [r.first_time for r in ranges],
            [r.last_time for r in ranges],
        )


async def pass_gate(conn: asyncpg.Connection, lock_timeout: timedelta) -> Any:
    """The refresher's side: wait for every writer holding the gate, read the clock, let go.

    `conn` must not be inside a transaction (the gate is a session lock, held
    only for these two statements). Raises asyncpg.LockNotAvailableError when
    writers hold the gate longer than `lock_timeout`; writers queue behind a
    waiting refresher, so the timeout bounds how long they can be held up.
    """
    milliseconds = max(1, int(lock_timeout.total_seconds() * 1000))
    await conn.execute(f"SET lock_timeout = {milliseconds}")
    try:
        now = await conn.fetchval(
            "SELECT clock_timestamp() FROM (SELECT pg_advisory_lock($1) OFFSET 0) AS locked", GATE_LOCK_KEY
        )
        await conn.execute("SELECT pg_advisory_unlock($1)", GATE_LOCK_KEY)
    finally:
        await conn.execute("RESET lock_timeout")
    return now
