"""Who is calling: the device a bearer token belongs to, looked up by hash and
cached briefly.

A gateway opens a stream and sends hundreds of batches on it, and simple
devices call WriteReadings every few seconds, so the lookup is cached for
`token_cache_ttl` (unknown tokens too, so a misconfigured device cannot turn
every call into a database read). The writer checks the device's status
again inside each batch's transaction, so a disabled device is refused at
once for writes; the cache only delays the refusal of GetUploadOffset.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import asyncpg

from sensormesh_core.errors import PermissionDenied, Unauthenticated
from sensormesh_core.storage.registry import TokenOwner, token_owner
from sensormesh_core.tokens import bearer_token, hash_token

MAX_CACHED_TOKENS = 100_000


class Authenticator:
    """Maps bearer tokens to devices."""

    def __init__(self, pool: asyncpg.Pool, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        # token hash -> (owner or None, expiry); the token itself is never kept
        self._cache: OrderedDict[bytes, tuple[TokenOwner | None, float]] = OrderedDict()

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> TokenOwner:
        """The active device behind the call's token.

        Raises Unauthenticated (no token, or one that matches no device) or
        PermissionDenied (the device is disabled).
        """
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing `authorization: Bearer <device token>` metadata")
        owner = await self._lookup(token)
        if owner is None:
            raise Unauthenticated("unknown device token")
        if not owner.active:
            raise PermissionDenied(f"device {owner.device_id!r} is disabled")
        return owner

    @staticmethod
    def authorize(owner: TokenOwner, device_id: str) -> None:
        """Raise PermissionDenied unless the caller is `device_id`."""
        if owner.device_id != device_id:
            raise PermissionDenied(f"this token belongs to device {owner.device_id!r}, not {device_id!r}")

    def forget(self) -> None:
        """Drop every cached lookup (tests; a device was disabled and must be refused now)."""
        self._cache.clear()

    async def _lookup(self, token: str) -> TokenOwner | None:
        key = hash_token(token)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self._pool.acquire() as conn:
            owner = await token_owner(conn, token)
        self._cache[key] = (owner, now + self._ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED_TOKENS:
            self._cache.popitem(last=False)
        return owner
