"""The local stack's admin API key: made on the first start, kept in `<data>/admin.key`.

`sensormesh up` makes an admin key on the database directly (there is no
admin yet to ask AccessService), writes it to `<data>/admin.key` readable by
its owner only (0600), and reuses it on later starts while the database
still accepts it. The CLI reads that file by default, and every example the
stack prints sends it (`-H "authorization: Bearer $(cat .sensormesh/admin.key)"`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from sensormesh_core.access.principal import ROLE_ADMIN
from sensormesh_core.errors import AlreadyExists
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key, key_is_live
from sensormesh_core.tokens import write_token_file

KEY_FILE = "admin.key"
KEY_NAME = "local-admin"


@dataclass(frozen=True)
class AdminKey:
    """The key, where it is kept, and whether this start made it."""

    key: str
    path: Path
    name: str
    created: bool


def ensure_admin_key(database_url: str, data_dir: Path) -> AdminKey:
    """The admin key in `<data_dir>/admin.key`, made (or made again) when the database does not accept it."""
    path = data_dir / KEY_FILE
    kept = path.read_text().strip() if path.exists() else ""
    made = asyncio.run(_keep_or_make(database_url, kept))
    if made is None:
        return AdminKey(kept, path, KEY_NAME, created=False)
    name, key = made
    path.parent.mkdir(parents=True, exist_ok=True)
    write_token_file(path, key)
    return AdminKey(key, path, name, created=True)


async def _keep_or_make(url: str, kept: str) -> tuple[str, str] | None:
    """None if the database accepts `kept`; else a new key's name and key."""
    conn = await asyncpg.connect(url)
    try:
        if kept and await key_is_live(conn, kept):
            return None
        return await _create(conn)
    finally:
        await conn.close()


async def _create(conn: asyncpg.Connection) -> tuple[str, str]:
    """A new admin key under the first free name: local-admin, local-admin-2, ..."""
    for attempt in range(1, 1000):
        name = KEY_NAME if attempt == 1 else f"{KEY_NAME}-{attempt}"
        try:
            _, key = await create_key(conn, name, ROLE_ADMIN, creator=LOCAL_CREATOR)
        except AlreadyExists:
            continue
        return name, key
    raise RuntimeError("no free name for the local admin key (local-admin-2 ... -999 are taken)")
