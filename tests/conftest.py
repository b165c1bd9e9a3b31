"""Session-wide fixtures: a real PostgreSQL and clean databases per test.

The server is the embedded PostgreSQL (started once per session in a
temporary folder), or the one at SENSORMESH_TEST_DATABASE_URL when that is
set (CI also runs the storage tests against the machine's PostgreSQL 15).
The schema is migrated once into a template database; each test that needs
the schema gets its own copy (CREATE DATABASE ... TEMPLATE, ~100 ms), so
tests never see each other's rows.

The storage suite runs on both backends (see the README's "Testing against
TimescaleDB"). A test meaningful on one only says so with
`@pytest.mark.partitioned_only` or `@pytest.mark.timescaledb_only`, and skips
on the other with the reason.
"""

from __future__ import annotations

import asyncio
import os
import time
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
from sensormesh_core.storage.maintenance import Backend, maintain

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


def close_to_connections(admin_url: str, name: str) -> None:
    """Refuse new connections to database `name` and end the ones it has.

    CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the
    template, and TimescaleDB's scheduler connects to every database that
    allows connections (its launcher skips those that do not).
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, f"sessions on {name} did not end"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_url: str) -> Iterator[str]:
    """Name of a database migrated to head, used as the template for per-test copies."""
    name = f"sensormesh_template_{uuid.uuid4().hex[:8]}"
    ensure_database(postgres_admin_url, name)
    migrate_with_partitions(with_database(postgres_admin_url, name))
    close_to_connections(postgres_admin_url, name)
    try:
        yield name
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def storage_backend(postgres_admin_url: str, migrated_template: str) -> Backend:
    """The backend the test server's migrations choose (SENSORMESH_TIMESCALEDB=auto)."""
    name = f"sensormesh_backend_{uuid.uuid4().hex[:8]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    try:
        with psycopg.connect(with_database(postgres_admin_url, name)) as conn:
            row = conn.execute("SELECT value FROM sensormesh_meta WHERE key = 'backend'").fetchone()
    finally:
        _drop_database(postgres_admin_url, name)
    assert row is not None, "the template is not migrated"
    return Backend(row[0])


_ONLY_ON = {"partitioned_only": Backend.PARTITIONED, "timescaledb_only": Backend.TIMESCALEDB}
_WHY_ONLY = {
    Backend.PARTITIONED: "this server migrates to TimescaleDB, whose chunks, continuous aggregates and "
    "policies replace the partitions, rollup tables and refresher this checks",
    Backend.TIMESCALEDB: "this server has no preloaded TimescaleDB (set SENSORMESH_TEST_DATABASE_URL to one; "
    "see the README's Testing against TimescaleDB)",
}


@pytest.fixture(autouse=True)
def _only_on_backend(request: pytest.FixtureRequest) -> None:
    """Skip a test marked for one backend when the test server migrates to the other."""
    wanted = [backend for marker, backend in _ONLY_ON.items() if request.node.get_closest_marker(marker)]
    if not wanted:
        return
    actual: Backend = request.getfixturevalue("storage_backend")
    if actual not in wanted:
        pytest.skip(f"only on the {wanted[0].value} backend: {_WHY_ONLY[wanted[0]]}")


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
