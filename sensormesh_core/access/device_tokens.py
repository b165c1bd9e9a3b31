"""Device tokens to devices: looked up by hash and cached briefly.

A gateway opens a stream and sends hundreds of batches on it, and simple
devices call WriteReadings every few seconds, so the lookup is cached for
`ttl` seconds (unknown tokens too, so a misconfigured device cannot turn
every call into a database read). That cache is the bound within which a
rotated token or a deleted device is refused (at most 10 s, the settings'
limit). The ingest writer checks the device's status again inside each
batch's transaction, so a disabled device is refused at once for writes.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import asyncpg

from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import PermissionDenied, Unauthenticated, Unavailable
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS
from sensormesh_core.storage.registry import TokenOwner, token_owner
from sensormesh_core.tokens import hash_token

log = logging.getLogger(__name__)

MAX_CACHED_TOKENS = 100_000


class DeviceTokens:
    """Maps device tokens to the devices they belong to."""

    def __init__(self, pool: asyncpg.Pool, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        # token hash -> (owner or None, expiry); the token itself is never kept
        self._cache: OrderedDict[bytes, tuple[TokenOwner | None, float]] = OrderedDict()

    async def authenticate(self, token: str) -> Principal:
        """The active device behind `token`.

        Raises Unauthenticated (a token that matches no device: never issued,
        rotated away, or its device deleted) or PermissionDenied (the device
        is disabled).
        """
        owner = await self._lookup(token)
        if owner is None:
            raise Unauthenticated("unknown device token (never issued, rotated, or its device deleted)")
        if not owner.active:
            raise PermissionDenied(f"device {owner.device_id!r} is disabled", reason="DEVICE_DISABLED")
        return Principal("device", owner.device_id)

    @staticmethod
    def authorize(caller: Principal, device_id: str) -> None:
        """Raise PermissionDenied unless the caller is device `device_id`."""
        if caller.kind != "device" or caller.name != device_id:
            raise PermissionDenied(f"this token belongs to device {caller.name!r}, not {device_id!r}")

    def forget(self) -> None:
        """Drop every cached lookup (tests; a device was disabled and must be refused now)."""
        self._cache.clear()

    async def _lookup(self, token: str) -> TokenOwner | None:
        key = hash_token(token)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            async with self._pool.acquire() as conn:
                owner = await token_owner(conn, token)
        except RETRYABLE_DATABASE_ERRORS as exc:
            log.warning("event=credential_lookup_unavailable error=%r", exc)
            raise Unavailable(
                "the database is unavailable, so the credential cannot be checked; retry"
            ) from exc
        self._cache[key] = (owner, now + self._ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED_TOKENS:
            self._cache.popitem(last=False)
        return owner
