"""Where the database is: the configured URL, or the embedded server.

One place turns settings into a URL, so the services, the migrations and the
tests agree on it. URLs are libpq style (`postgresql://...`), which asyncpg
and psycopg both take; SQLAlchemy gets the same URL with its driver named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.embedded import EmbeddedPostgres


@dataclass
class Database:
    """A resolved database. Holds the embedded server, if any, so it can be stopped."""

    url: str
    embedded: EmbeddedPostgres | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def open_database(settings: StorageSettings) -> Database:
    """The configured database, or the embedded one under `settings.data_dir`."""
    configured = settings.database_dsn()
    if configured is not None:
        return Database(url=configured)
    embedded = EmbeddedPostgres(settings.data_dir)
    return Database(url=embedded.url(), embedded=embedded)


def sqlalchemy_url(url: str) -> str:
    """The same URL with SQLAlchemy's psycopg (v3) driver named."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql+psycopg://{rest}"


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database (socket `?host=` kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))
