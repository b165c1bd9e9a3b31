"""Run the schema migrations from code (`sensormesh db migrate`, tests, `up`).

The Alembic configuration is built here rather than read from an ini file,
so the installed package carries everything it needs.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from sensormesh_core.config import TimescaleMode
from sensormesh_core.storage.database import sqlalchemy_url
from sensormesh_core.storage.timescaledb_probe import PROBE_SQL, state_of, use_timescaledb

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str, timescaledb: TimescaleMode = TimescaleMode.AUTO) -> Config:
    """An Alembic config for the database at `url` (libpq-style URL)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser; URL-encoded passwords have them.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    config.attributes["timescaledb"] = timescaledb.value
    return config


def upgrade(url: str, revision: str = "head", timescaledb: TimescaleMode = TimescaleMode.AUTO) -> None:
    """Migrate up to `revision`. Running it again is harmless.

    Under `require`, a server that cannot give TimescaleDB fails here, before revision 0001
    commits anything (revision 0002 decides the backend and would fail only after it).
    """
    if timescaledb is TimescaleMode.REQUIRE:
        _check_timescaledb_ready(url)
    command.upgrade(alembic_config(url, timescaledb), revision)


def _check_timescaledb_ready(url: str) -> None:
    with psycopg.connect(url) as conn:
        installed, available, preloaded = conn.execute(PROBE_SQL).fetchone() or (False, False, False)
    use_timescaledb(TimescaleMode.REQUIRE, state_of(installed, available, preloaded))


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate down to `revision` ("base" removes every sensormesh table)."""
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
