"""Operator API keys in the database: create, find by hash, list, revoke.

Only a key's SHA-256 is stored (`sensormesh_core.tokens`); the
key is returned once, by `create_key`. Shared by the control service's
AccessService, the access interceptor of every service (lookups) and the
`sensormesh keys` bootstrap path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import AlreadyExists, NotFound
from sensormesh_core.tokens import hash_token, new_api_key

LOCAL_CREATOR = "local"  # a key made on the database directly (bootstrap, `sensormesh up`)

_COLUMNS = "name, role, device_ids, device_labels, creator, create_time, expire_time, revoke_time"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A row of `api_keys`, without the hash."""

    name: str
    role: int
    scope: DeviceScope | None
    creator: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKeyRecord:
        labels = row["device_labels"]
        labels = json.loads(labels) if isinstance(labels, str) else dict(labels)
        return cls(
            name=row["name"],
            role=row["role"],
            scope=DeviceScope.of(row["device_ids"], labels),
            creator=row["creator"],
            create_time=row["create_time"],
            expire_time=row["expire_time"],
            revoke_time=row["revoke_time"],
        )


async def create_key(
    conn: asyncpg.Connection,
    name: str,
    role: int,
    *,
    creator: str,
    scope: DeviceScope | None = None,
    expire_time: datetime | None = None,
) -> tuple[ApiKeyRecord, str]:
    """Store a new key; returns its record and the key (the only time it exists in clear).

    Raises AlreadyExists if the name is taken, by a live or a revoked key.
    """
    key = new_api_key()
    try:
        row = await conn.fetchrow(
            f"INSERT INTO api_keys (name, role, key_hash, device_ids, device_labels, creator, expire_time) "
            f"VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING {_COLUMNS}",
            name,
            role,
            hash_token(key),
            sorted(scope.device_ids) if scope else [],
            json.dumps(dict(scope.labels) if scope else {}),
            creator,
            expire_time,
        )
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"API key {name!r} already exists (revoked keys keep their names)") from exc
    assert row is not None
    return ApiKeyRecord.from_row(row), key


async def find_key(conn: asyncpg.Connection, key_hash: bytes) -> ApiKeyRecord | None:
    """The key with this hash, revoked and expired ones included; None if none has it."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash)
    return ApiKeyRecord.from_row(row) if row else None


async def list_keys(
    conn: asyncpg.Connection, *, after: str | None, limit: int, show_revoked: bool
) -> list[ApiKeyRecord]:
    """Up to `limit` keys with names after `after`, in name order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR name > $1) "
        "AND ($2 OR revoke_time IS NULL) ORDER BY name LIMIT $3",
        after,
        show_revoked,
        limit,
    )
    return [ApiKeyRecord.from_row(row) for row in rows]


async def revoke_key(conn: asyncpg.Connection, name: str) -> ApiKeyRecord:
    """Revoke the key (a revoked key keeps its first revocation time); raises NotFound."""
    row = await conn.fetchrow(
        f"UPDATE api_keys SET revoke_time = coalesce(revoke_time, now()) WHERE name = $1 RETURNING {_COLUMNS}",
        name,
    )
    if row is None:
        raise NotFound(f"API key {name!r} does not exist")
    return ApiKeyRecord.from_row(row)


async def key_is_live(conn: asyncpg.Connection, key: str) -> bool:
    """Whether `key` is a stored key that is neither revoked nor expired."""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoke_time IS NULL "
            "AND (expire_time IS NULL OR expire_time > now())",
            hash_token(key),
        )
    )
