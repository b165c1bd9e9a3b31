"""Alembic environment: runs migrations online over psycopg.

The URL and options come from `sensormesh_core.storage.migrate`, which builds
the Alembic config in code; there is no alembic.ini to keep in sync.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config

# Arbitrary but fixed: "sensormesh migrations" as a 63-bit advisory lock key.
MIGRATION_LOCK_KEY = 0x5E45_0001


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; run migrations through `sensormesh db migrate`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Two replicas starting at once must not both migrate: a session-level
        # advisory lock makes the second wait, then find nothing to do.
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=None,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
            connection.commit()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
