"""A throw-away, migrated database for `sensormesh bench query`.

On the configured server (SENSORMESH_DATABASE_URL) a new database is created
and dropped afterwards; without one, an embedded PostgreSQL runs in the
benchmark's temporary folder.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import psycopg
from psycopg import sql

from query_service.settings import QuerySettings
from sensormesh_core.storage import migrate
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import EmbeddedPostgres, ensure_database
from sensormesh_core.storage.maintenance import maintain


async def _maintain(url: str, settings: QuerySettings) -> None:
    conn = await asyncpg.connect(url)
    try:
        await maintain(conn, settings)
    finally:
        await conn.close()


@asynccontextmanager
async def bench_database(folder: Path) -> AsyncIterator[str]:
    settings = QuerySettings()
    embedded = None
    admin_url = settings.database_dsn()
    if admin_url is None:
        embedded = EmbeddedPostgres(folder, delete_on_exit=True)
        admin_url = embedded.admin_url()
    name = f"sensormesh_bench_{uuid.uuid4().hex[:8]}"
    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    try:
        migrate.upgrade(url, timescaledb=settings.timescaledb)
        await _maintain(url, settings)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if embedded is not None:
            embedded.stop()
