"""Retention, compression, rollup refresh and partitions: applied from settings.

On TimescaleDB these are background jobs inside the database; applying them
replaces the policies with ones built from the current settings (run at
`sensormesh db migrate` and by the migration Job). On plain PostgreSQL the
service itself keeps partitions ahead of time and drops expired ones, so
ingest calls `maintain` on a timer as well. Camera frames (metadata and
images) age by `frame_retention`, readings by `retention`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.partitions import PartitionManager, partition_name
from sensormesh_core.storage.schema import FRAME_TABLES, READING_TABLES, ROLLUP_WIDTHS

log = logging.getLogger(__name__)

# When the continuous aggregates refresh, and how close to now: (end_offset, schedule_interval).
ROLLUP_SCHEDULE: dict[str, tuple[timedelta, timedelta]] = {
    "1m": (timedelta(minutes=1), timedelta(minutes=1)),
    "1h": (timedelta(hours=1), timedelta(minutes=30)),
}
# How far inside the raw retention a refresh window starts. Ingest accepts readings as old as
# the retention, so the window must reach back nearly that far, or an agent's backlog after a
# long outage would never reach the rollups; but a refresh over raw chunks the retention job has
# dropped deletes their buckets from the aggregate (TimescaleDB, "Data retention with continuous
# aggregates"), so it stops a day short of the horizon, room for a refresh that ran late.
REFRESH_MARGIN = timedelta(days=1)


def rollup_refresh_window(width: str, settings: StorageSettings) -> tuple[timedelta, timedelta, timedelta]:
    """(start_offset, end_offset, schedule_interval) of the `width` continuous aggregates' policy.

    Refreshes only re-materialize what the invalidation log marks as changed, so a
    window of weeks costs little once the aggregate has been materialized.
    """
    end, every = ROLLUP_SCHEDULE[width]
    return settings.retention - REFRESH_MARGIN, end, every


class Backend(StrEnum):
    """How reading tables are partitioned; recorded by migration 0002."""

    TIMESCALEDB = "timescaledb"
    PARTITIONED = "partitioned"


@dataclass
class MaintenanceReport:
    backend: Backend
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    policies_applied: list[str] = field(default_factory=list)


async def storage_backend(conn: asyncpg.Connection) -> Backend:
    """The backend the migrations chose for this database."""
    value = await conn.fetchval("SELECT value FROM sensormesh_meta WHERE key = 'backend'")
    if value is None:
        raise RuntimeError("the database is not migrated; run `sensormesh db migrate`")
    return Backend(value)


async def has_frame_tables(conn: asyncpg.Connection) -> bool:
    """Whether the schema has the frame tables (revision 0008): maintenance of a database that an
    older revision left (a test at 0004, services started before `db migrate`) skips them."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", FRAME_TABLES[0]))


async def apply_timescale_policies(conn: asyncpg.Connection, settings: StorageSettings) -> list[str]:
    """Replace retention, compression and refresh policies with the configured ones."""
    applied: list[str] = []
    for table in READING_TABLES:
        await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", table)
        await conn.execute(
            "SELECT add_retention_policy($1, drop_after => $2::interval)", table, settings.retention
        )
        await conn.execute("SELECT remove_compression_policy($1, if_exists => true)", table)
        await conn.execute(
            "SELECT add_compression_policy($1, compress_after => $2::interval)",
            table,
            settings.compress_after,
        )
        applied += [f"{table}:retention", f"{table}:compression"]
        for width in ROLLUP_WIDTHS:
            view = f"{table}_{width}"
            start, end, every = rollup_refresh_window(width, settings)
            keep = settings.rollup_1m_retention if width == "1m" else settings.rollup_1h_retention
            await conn.execute("SELECT remove_continuous_aggregate_policy($1, if_exists => true)", view)
            await conn.execute(
                "SELECT add_continuous_aggregate_policy($1, start_offset => $2::interval, "
                "end_offset => $3::interval, schedule_interval => $4::interval)",
                view,
                start,
                end,
                every,
            )
            await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", view)
            await conn.execute("SELECT add_retention_policy($1, drop_after => $2::interval)", view, keep)
            applied += [f"{view}:refresh", f"{view}:retention"]
    if not await has_frame_tables(conn):
        return applied
    for table in FRAME_TABLES:  # images do not compress again: retention only
        await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", table)
        await conn.execute(
            "SELECT add_retention_policy($1, drop_after => $2::interval)", table, settings.frame_retention
        )
        applied.append(f"{table}:retention")
    return applied


async def maintain_partitions(
    conn: asyncpg.Connection,
    settings: StorageSettings,
    partitions: PartitionManager,
    now: datetime | None = None,
    *,
    retention: timedelta | None = None,
) -> tuple[list[str], list[str]]:
    """Create today's and the next days' partitions of the manager's tables; drop those past
    `retention` (the readings' retention when None)."""
    now = now or datetime.now(UTC)
    await partitions.load(conn)
    days = [(now + timedelta(days=offset)).date() for offset in range(-1, settings.partitions_ahead + 1)]
    created = await partitions.ensure(conn, days)
    dropped = await partitions.drop_before(conn, now - (retention or settings.retention))
    return [partition_name(table, day) for day in created for table in partitions.tables], dropped


async def maintain(
    conn: asyncpg.Connection,
    settings: StorageSettings,
    partitions: PartitionManager | None = None,
    *,
    frame_partitions: PartitionManager | None = None,
    apply_policies: bool = False,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Bring storage in line with the settings. Safe to run from several replicas.

    `partitions` and `frame_partitions` (plain PostgreSQL) are the caller's managers of the
    reading and the frame tables, so it learns the days created; new ones otherwise."""
    backend = await storage_backend(conn)
    report = MaintenanceReport(backend=backend)
    if backend is Backend.TIMESCALEDB:
        if apply_policies:
            report.policies_applied = await apply_timescale_policies(conn, settings)
    else:
        created, dropped = await maintain_partitions(conn, settings, partitions or PartitionManager(), now)
        frames_created: list[str] = []
        frames_dropped: list[str] = []
        if await has_frame_tables(conn):
            frames = frame_partitions or PartitionManager(FRAME_TABLES)
            frames_created, frames_dropped = await maintain_partitions(
                conn, settings, frames, now, retention=settings.frame_retention
            )
        report.partitions_created = created + frames_created
        report.partitions_dropped = dropped + frames_dropped
    log.info(
        "event=storage_maintained backend=%s partitions_created=%d partitions_dropped=%d policies=%d",
        backend.value,
        len(report.partitions_created),
        len(report.partitions_dropped),
        len(report.policies_applied),
    )
    return report
