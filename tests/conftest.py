"""Session-wide fixtures: a real PostgreSQL and clean databases per test.

The server is the embedded PostgreSQL (started once per session in a
temporary folder), or the one at SENSORMESH_TEST_DATABASE_URL when that is
set (CI also runs the storage tests against the machine's PostgreSQL 15).
The schema is migrated once into a template database; each test that needs
the schema gets its own copy (CREATE DATABASE ... TEMPLATE, ~100 ms), so
tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import psycopg
import pytest
from psycopg import sql

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage import migrate
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import EmbeddedPostgres, ensure_database
from sensormesh_core.storage.maintenance import maintain

TEST_DATABASE_URL_VARIABLE = "SENSORMESH_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database on the test server from which others can be created."""
    configured = os.environ.get(TEST_DATABASE_URL_VARIABLE)
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"), delete_on_exit=True)
    server.start()
    try:
        yield server.admin_url()
    finally:
        server.stop()


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrate_with_partitions(url: str) -> None:
    """Migrate the database at `url` to head and create the partitions around today."""
    migrate.upgrade(url)

    async def create_partitions() -> None:
        conn = await asyncpg.connect(url)
        try:
            await maintain(conn, StorageSettings())
        finally:
            await conn.close()

    asyncio.run(create_partitions())


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_url: str) -> Iterator[str]:
    """Name of a database migrated to head, used as the template for per-test copies."""
    name = f"sensormesh_template_{uuid.uuid4().hex[:8]}"
    ensure_database(postgres_admin_url, name)
    migrate_with_partitions(with_database(postgres_admin_url, name))
    try:
        yield name
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema (for migration tests)."""
    name = f"sensormesh_test_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name)
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture
def database_url(postgres_admin_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh database migrated to head, with partitions around today."""
    name = f"sensormesh_test_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection to a fresh migrated database."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()
