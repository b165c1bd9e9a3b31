"""Operator API keys to principals: looked up by hash and cached briefly.

The cache holds a key's record for `ttl` seconds (unknown keys too, so a
flood of made-up keys is not a flood of database reads); that is the bound
within which a revoked key is refused. Expiry is checked on every call
against the cached record's time, so it is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from sensormesh_core.access.credential_cache import CredentialCache
from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import Unauthenticated
from sensormesh_core.storage.api_keys import ApiKeyRecord, find_key
from sensormesh_core.tokens import hash_token

MAX_CACHED_KEYS = 10_000


class ApiKeys:
    """Maps API keys to operator principals."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._wall_clock = wall_clock
        self._cache: CredentialCache[ApiKeyRecord] = CredentialCache(
            pool, ttl, _find, max_entries=MAX_CACHED_KEYS, clock=clock
        )

    async def authenticate(self, key: str) -> Principal:
        """The operator behind `key`.

        Raises Unauthenticated for a key that matches none, or one that was
        revoked or has expired (the message says which, and when).
        """
        record = await self._cache.get(key)
        if record is None:
            raise Unauthenticated("unknown API key", reason="API_KEY_UNKNOWN")
        if record.revoke_time is not None:
            raise Unauthenticated(
                f"API key {record.name!r} was revoked at {record.revoke_time.isoformat()}",
                reason="API_KEY_REVOKED",
            )
        if record.expire_time is not None and record.expire_time <= self._wall_clock():
            raise Unauthenticated(
                f"API key {record.name!r} expired at {record.expire_time.isoformat()}",
                reason="API_KEY_EXPIRED",
            )
        return Principal("key", record.name, record.role, record.scope)

    def forget(self) -> None:
        """Drop every cached lookup (tests)."""
        self._cache.clear()


async def _find(conn: asyncpg.Connection, key: str) -> ApiKeyRecord | None:
    return await find_key(conn, hash_token(key))
