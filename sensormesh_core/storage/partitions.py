"""Daily range partitions for the plain-PostgreSQL backend.

TimescaleDB creates chunks by itself; native partitioning does not, and a row
with no partition to go to fails the whole COPY. So ingest asks this module
for the days a batch touches before writing (a set lookup once the days are
known), and maintenance creates days ahead and drops days past retention.

A manager keeps one group of tables that share their days and their
retention: the reading tables (the default), or the frame tables (metadata
and images, `frame_retention`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from sensormesh_core.storage.schema import READING_TABLES

# Serialises partition DDL across ingest replicas; CREATE TABLE IF NOT EXISTS
# alone still races on the catalog.
PARTITION_LOCK_KEY = 0x5E45_0002
_PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def days_between(first: datetime, last: datetime) -> list[date]:
    """UTC days from `first` to `last`, inclusive."""
    start, end = first.astimezone(UTC).date(), last.astimezone(UTC).date()
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


async def oldest_partition_day(conn: asyncpg.Connection, table: str) -> date | None:
    """The first day `table` has a partition for, if any (where its rows can start)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1",
        table,
    )
    days = [
        datetime.strptime(match["day"], "%Y%m%d").date()
        for match in (_PARTITION_NAME.match(r["relname"]) for r in rows)
        if match is not None
    ]
    return min(days, default=None)


class PartitionManager:
    """Creates missing daily partitions of `tables`; remembers which days exist."""

    def __init__(self, tables: tuple[str, ...] = READING_TABLES) -> None:
        self.tables = tables
        self._known: set[date] = set()

    def missing(self, days: Iterable[date]) -> list[date]:
        return sorted(set(days) - self._known)

    async def load(self, conn: asyncpg.Connection) -> None:
        """Learn which days already have a partition of every table of the group."""
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
            list(self.tables),
        )
        per_day: dict[date, int] = {}
        for row in rows:
            match = _PARTITION_NAME.match(row["relname"])
            if match:
                day = datetime.strptime(match["day"], "%Y%m%d").date()
                per_day[day] = per_day.get(day, 0) + 1
        self._known = {day for day, count in per_day.items() if count == len(self.tables)}

    async def ensure(self, conn: asyncpg.Connection, days: Iterable[date]) -> list[date]:
        """Create the partitions of `days` that do not exist yet. Returns the days created.

        Runs in its own transaction: call it before, not inside, a data transaction.
        """
        missing = self.missing(days)
        if not missing:
            return []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
            for day in missing:
                lower = f"{day.isoformat()} 00:00:00+00"
                upper = f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"
                for table in self.tables:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
                        f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
                    )
        self._known.update(missing)
        return missing

    async def drop_before(self, conn: asyncpg.Connection, cutoff: datetime) -> list[str]:
        """Drop partitions whose whole day ends at or before `cutoff`. Returns their names."""
        await self.load(conn)
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
            list(self.tables),
        )
        last_day_to_drop = cutoff.astimezone(UTC).date() - timedelta(days=1)
        dropped: list[str] = []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
            for row in rows:
                match = _PARTITION_NAME.match(row["relname"])
                if match and datetime.strptime(match["day"], "%Y%m%d").date() <= last_day_to_drop:
                    await conn.execute(f"DROP TABLE IF EXISTS {row['relname']}")
                    dropped.append(row["relname"])
        self._known = {d for d in self._known if d > last_day_to_drop}
        return sorted(dropped)
