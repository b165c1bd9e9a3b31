"""What the server offers of TimescaleDB, and whether the schema should use it.

Three states matter, and `pg_available_extensions` alone tells only the first
apart: a server with the extension's files but without `timescaledb` in
`shared_preload_libraries` lists it as available, yet `CREATE EXTENSION`
there ends the connection (FATAL "must be preloaded"), so it cannot be tried
and caught. What tells the states apart is the loader: when preloaded it
defines `timescaledb.max_background_workers`, which `pg_settings` then shows to
every role. A value set in postgresql.conf without the loader stays a hidden
placeholder, and `shared_preload_libraries` itself is readable only by
superusers and pg_read_all_settings, which the sensormesh role is not.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from sensormesh_core.config import TimescaleMode

log = logging.getLogger(__name__)

# One row: (installed in this database, files on the server, loader preloaded).
PROBE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'), "
    "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), "
    "EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers')"
)
PRELOAD_ADVICE = "add timescaledb to shared_preload_libraries in postgresql.conf and restart the server"


class ExtensionState(StrEnum):
    """TimescaleDB as this server offers it."""

    ABSENT = "absent"  # no extension files
    NOT_PRELOADED = "not preloaded"  # files, but the loader is not in shared_preload_libraries
    READY = "ready"  # preloaded: CREATE EXTENSION works


class TimescaleUnavailable(RuntimeError):
    """The setting asks for TimescaleDB (or the database already uses it) and the server cannot give it."""


def state_of(installed: bool, available: bool, preloaded: bool) -> ExtensionState:
    """The state from PROBE_SQL's row. A database that has the extension on a server that
    does not preload it cannot be used at all, whatever the setting."""
    if preloaded and (available or installed):
        return ExtensionState.READY
    if installed:
        raise TimescaleUnavailable(
            "this database has the timescaledb extension but the server does not preload it: "
            + PRELOAD_ADVICE
        )
    return ExtensionState.NOT_PRELOADED if available else ExtensionState.ABSENT


def use_timescaledb(mode: TimescaleMode, state: ExtensionState) -> bool:
    """Whether a first migration builds hypertables. `require` fails naming the setting and
    what to change; `auto` falls back to partitioning, with a warning when the extension
    is there but not preloaded (an operator who installed it meant to use it)."""
    if mode is TimescaleMode.OFF:
        return False
    if state is ExtensionState.READY:
        return True
    if mode is TimescaleMode.REQUIRE:
        if state is ExtensionState.ABSENT:
            raise TimescaleUnavailable(
                "SENSORMESH_TIMESCALEDB=require but the server has no timescaledb extension"
            )
        raise TimescaleUnavailable(
            "SENSORMESH_TIMESCALEDB=require but the server does not preload timescaledb: " + PRELOAD_ADVICE
        )
    if state is ExtensionState.NOT_PRELOADED:
        log.warning(
            "event=timescaledb_not_preloaded backend=partitioned advice=%r "
            "(SENSORMESH_TIMESCALEDB=auto: using plain PostgreSQL partitioning; "
            "set SENSORMESH_TIMESCALEDB=off to silence this)",
            PRELOAD_ADVICE,
        )
    return False
