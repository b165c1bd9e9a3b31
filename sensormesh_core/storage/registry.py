"""The device registry in the database: create a device with its token, find
the device a token belongs to.

Shared by the ingest service (authentication), the query service's
DeviceService and the `sensormesh devices` command, so the rules for ids and
tokens live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from sensormesh_core.errors import AlreadyExists
from sensormesh_core.tokens import hash_token, new_token

# Enum numbers of sensormesh.v1.DeviceType and DeviceStatus, as stored.
DEVICE_TYPE_GATEWAY = 1
DEVICE_TYPE_DIRECT = 2
DEVICE_STATUS_ACTIVE = 1
DEVICE_STATUS_DISABLED = 2


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A row of `devices`."""

    device_id: str
    display_name: str
    description: str
    device_type: int
    status: int
    labels: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    update_time: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeviceRecord:
        labels = row["labels"]
        return cls(
            device_id=row["device_id"],
            display_name=row["display_name"],
            description=row["description"],
            device_type=row["device_type"],
            status=row["status"],
            labels=json.loads(labels) if isinstance(labels, str) else dict(labels),
            create_time=row["create_time"],
            update_time=row["update_time"],
        )


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Who a token belongs to, and whether that device may write."""

    device_id: str
    status: int

    @property
    def active(self) -> bool:
        return self.status == DEVICE_STATUS_ACTIVE


DEVICE_COLUMNS = "device_id, display_name, description, device_type, status, labels, create_time, update_time"


async def create_device(
    conn: asyncpg.Connection,
    device_id: str,
    *,
    display_name: str = "",
    description: str = "",
    device_type: int = DEVICE_TYPE_GATEWAY,
    status: int = DEVICE_STATUS_ACTIVE,
    labels: dict[str, str] | None = None,
) -> tuple[DeviceRecord, str]:
    """Register a device with its upload offset; returns it and its new token.

    Raises AlreadyExists if the id is taken. The id's format is checked by the
    caller (protovalidate) and again by a CHECK constraint.
    """
    token = new_token()
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO devices (device_id, display_name, description, device_type, status, labels, "
                f"token_hash) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) RETURNING {DEVICE_COLUMNS}",
                device_id,
                display_name or device_id,
                description,
                device_type,
                status,
                json.dumps(labels or {}),
                hash_token(token),
            )
            await conn.execute("INSERT INTO upload_offsets (device_id) VALUES ($1)", device_id)
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"device {device_id!r} already exists") from exc
    assert row is not None
    return DeviceRecord.from_row(row), token


async def token_owner(conn: asyncpg.Connection, token: str) -> TokenOwner | None:
    """The device `token` belongs to, or None if it belongs to none."""
    row = await conn.fetchrow(
        "SELECT device_id, status FROM devices WHERE token_hash = $1", hash_token(token)
    )
    return TokenOwner(row["device_id"], row["status"]) if row else None
