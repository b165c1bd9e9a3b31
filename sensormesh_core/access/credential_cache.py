"""A short-lived cache of credential lookups, shared by device tokens and API keys.

Streams send hundreds of batches and dashboards poll, so each credential's
lookup is trusted for `ttl` seconds (unknown credentials too, so a flood of
made-up ones is not a flood of database reads); that is the bound within
which a revoked key or rotated token is refused. Entries are keyed by the
credential's SHA-256: the credential itself is never kept. A database outage
during a lookup is UNAVAILABLE, not a bug.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

from sensormesh_core.errors import Unavailable
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS
from sensormesh_core.tokens import hash_token

log = logging.getLogger(__name__)

T = TypeVar("T")


class CredentialCache(Generic[T]):
    """`fetch(conn, credential)` results by credential hash, each trusted for `ttl` seconds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl: float,
        fetch: Callable[[asyncpg.Connection, str], Awaitable[T | None]],
        *,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._fetch = fetch
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[T | None, float]] = OrderedDict()

    async def get(self, credential: str) -> T | None:
        """What `credential` belongs to (None: nothing), from the cache while it is fresh."""
        key = hash_token(credential)
        now = self._clock()
        cached = self._entries.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            async with self._pool.acquire() as conn:
                found = await self._fetch(conn, credential)
        except RETRYABLE_DATABASE_ERRORS as exc:
            log.warning("event=credential_lookup_unavailable error=%r", exc)
            raise Unavailable(
                "the database is unavailable, so the credential cannot be checked; retry"
            ) from exc
        self._entries[key] = (found, now + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return found

    def clear(self) -> None:
        """Drop every cached lookup."""
        self._entries.clear()
