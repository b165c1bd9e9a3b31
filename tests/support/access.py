"""Operator keys for tests: made on the test database directly, sent as metadata."""

from __future__ import annotations

import asyncpg

from sensormesh_core.access.principal import ROLE_ADMIN
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key


async def make_key(
    database_url: str,
    name: str,
    role: int = ROLE_ADMIN,
    *,
    scope: DeviceScope | None = None,
    **kwargs: object,
) -> str:
    """Create an API key in the database at `database_url`; returns the key."""
    conn = await asyncpg.connect(database_url)
    try:
        _, key = await create_key(conn, name, role, creator=LOCAL_CREATOR, scope=scope, **kwargs)  # type: ignore[arg-type]
    finally:
        await conn.close()
    return key


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `credential`."""
    return (("authorization", f"Bearer {credential}"),)
