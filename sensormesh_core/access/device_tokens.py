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

import time
from collections.abc import Callable

import asyncpg

from sensormesh_core.access.credential_cache import CredentialCache
from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import PermissionDenied, Unauthenticated
from sensormesh_core.storage.registry import TokenOwner, token_owner

MAX_CACHED_TOKENS = 100_000


class DeviceTokens:
    """Maps device tokens to the devices they belong to."""

    def __init__(self, pool: asyncpg.Pool, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache: CredentialCache[TokenOwner] = CredentialCache(
            pool, ttl, token_owner, max_entries=MAX_CACHED_TOKENS, clock=clock
        )

    async def authenticate(self, token: str) -> Principal:
        """The active device behind `token`.

        Raises Unauthenticated (a token that matches no device: never issued,
        rotated away, or its device deleted) or PermissionDenied (the device
        is disabled).
        """
        owner = await self._cache.get(token)
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
