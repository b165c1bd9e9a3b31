"""The device registry in the database: create, get, list, update and delete
devices; find the device a token belongs to.

Shared by the ingest service (authentication), the query service's
DeviceService and the `sensormesh devices` command, so the rules for ids and
tokens live in one place. What a device carries beyond its own row (sensors,
input states, thinning, dead letters) is read by `device_details`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import AlreadyExists, FailedPrecondition, NotFound
from sensormesh_core.storage import link_extremes
from sensormesh_core.storage.frame_blobs import FrameBlobStore, PostgresFrameBlobs
from sensormesh_core.storage.frames import delete_device_frames
from sensormesh_core.storage.link_extremes import BY_ID, DeviceOrder, SensorValue
from sensormesh_core.storage.live_signal import CHANNEL, FRAMES_CHANNEL, DeviceDeleted
from sensormesh_core.storage.rollups import forget_keys, has_rollup_tables
from sensormesh_core.storage.schema import MEASUREMENTS_TABLE, TYPED_TABLES
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
    # From upload_offsets, when the query joined it (0 / None otherwise).
    committed_sequence: int = 0
    last_upload_time: datetime | None = None
    # The fleet answer (link_extremes), when the query selected it.
    lowest_battery: SensorValue | None = None
    weakest_signal: SensorValue | None = None

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
            committed_sequence=row.get("committed_sequence") or 0,
            last_upload_time=row.get("last_upload_time"),
            lowest_battery=link_extremes.from_row(row, "battery"),
            weakest_signal=link_extremes.from_row(row, "signal"),
        )

    def sort_value(self, order: DeviceOrder) -> float | None:
        """The stored value this device is sorted by in `order` (a page cursor holds it);
        None in the id order or when the device has no such value."""
        extreme = {"battery": self.lowest_battery, "signal": self.weakest_signal}.get(order.extreme or "")
        return None if extreme is None else extreme.stored


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
    reregister: bool = False,
) -> tuple[DeviceRecord, str]:
    """Register a device with its upload offset; returns it and its new token.

    Raises AlreadyExists if the id is taken, FailedPrecondition if it belonged
    to a deleted device and `reregister` is not set (whoever may set it is the
    caller's decision: the admin role). The id's format is checked by the
    caller (protovalidate) and again by a CHECK constraint.
    """
    token = new_token()
    try:
        async with conn.transaction():
            retired = await conn.fetchval(
                "DELETE FROM retired_device_ids WHERE device_id = $1 RETURNING delete_time", device_id
            )
            if retired is not None and not reregister:
                raise FailedPrecondition(
                    f"device {device_id!r} was deleted at {retired.isoformat()}; registering its id again "
                    "is an explicit admin act (CreateDevice with reregister, `sensormesh devices create "
                    "--reregister`)",
                    reason="DEVICE_ID_RETIRED",
                )
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


async def rotate_token(conn: asyncpg.Connection, device_id: str) -> str:
    """Give the device a new token and return it; the old one matches nothing from now on.

    Raises NotFound.
    """
    token = new_token()
    updated = await conn.fetchval(
        "UPDATE devices SET token_hash = $2, update_time = now() WHERE device_id = $1 RETURNING device_id",
        device_id,
        hash_token(token),
    )
    if updated is None:
        raise NotFound(f"device {device_id!r} does not exist")
    return token


async def token_owner(conn: asyncpg.Connection, token: str) -> TokenOwner | None:
    """The device `token` belongs to, or None if it belongs to none."""
    row = await conn.fetchrow(
        "SELECT device_id, status FROM devices WHERE token_hash = $1", hash_token(token)
    )
    return TokenOwner(row["device_id"], row["status"]) if row else None


# The registry row with its upload offset and the fleet answer: what GetDevice and ListDevices show.
_SELECT_DEVICE = (
    "SELECT d.device_id, d.display_name, d.description, d.device_type, d.status, d.labels, "
    "d.create_time, d.update_time, o.committed_sequence, o.update_time AS last_upload_time, "
    f"{link_extremes.COLUMNS} FROM devices d LEFT JOIN upload_offsets o USING (device_id) {link_extremes.JOINS}"
)


async def get_device(conn: asyncpg.Connection, device_id: str) -> DeviceRecord:
    """The device with its committed sequence; raises NotFound."""
    row = await conn.fetchrow(f"{_SELECT_DEVICE} WHERE d.device_id = $1", device_id)
    if row is None:
        raise NotFound(f"device {device_id!r} does not exist")
    return DeviceRecord.from_row(row)


async def device_exists(conn: asyncpg.Connection, device_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", device_id))


# A device is in a scope ($n: ids, $n+1: labels as jsonb) if the scope lists its id,
# or its labels contain the selector's. No scope: both parameters NULL.
IN_SCOPE = (
    "(({ids}::text[] IS NULL AND {labels}::jsonb IS NULL) OR "
    "(cardinality({ids}::text[]) > 0 AND d.device_id = ANY({ids}::text[])) OR "
    "(cardinality({ids}::text[]) = 0 AND d.labels @> {labels}::jsonb))"
)


def scope_parameters(scope: DeviceScope | None) -> tuple[list[str] | None, str | None]:
    if scope is None:
        return None, None
    return sorted(scope.device_ids), json.dumps(dict(scope.labels))


async def require_visible(conn: asyncpg.Connection, device_id: str, scope: DeviceScope | None) -> None:
    """Raise NotFound unless the device exists and is in `scope` (None: every device).

    A device outside the scope gets the same answer as one that does not exist,
    so a scoped caller cannot learn which other devices there are.
    """
    ids, labels = scope_parameters(scope)
    visible = await conn.fetchval(
        "SELECT 1 FROM devices d WHERE d.device_id = $1 AND " + IN_SCOPE.format(ids="$2", labels="$3"),
        device_id,
        ids,
        labels,
    )
    if not visible:
        raise NotFound(f"device {device_id!r} does not exist")


async def list_devices(
    conn: asyncpg.Connection,
    *,
    after: str | None,
    limit: int,
    status: int = 0,
    device_type: int = 0,
    scope: DeviceScope | None = None,
    order: DeviceOrder = BY_ID,
    after_value: float | None = None,
) -> list[DeviceRecord]:
    """Up to `limit` devices in `scope` in `order`, after the device `after` (whose stored
    sort value was `after_value`, in an order by an extreme); 0 filters mean any."""
    ids, labels = scope_parameters(scope)
    page, order_by = link_extremes.page_sql(order, "$1", "$7")
    rows = await conn.fetch(
        f"{_SELECT_DEVICE} WHERE {page} "
        "AND ($2::smallint = 0 OR d.status = $2) AND ($3::smallint = 0 OR d.device_type = $3) "
        f"AND {IN_SCOPE.format(ids='$5', labels='$6')} "
        f"ORDER BY {order_by} LIMIT $4",
        after,
        status,
        device_type,
        limit,
        ids,
        labels,
        *(() if order.column is None else (after_value,)),  # $7, the cursor's value
    )
    return [DeviceRecord.from_row(row) for row in rows]


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    """New values for the fields an update names; None leaves a field as it is."""

    display_name: str | None = None
    description: str | None = None
    device_type: int | None = None
    status: int | None = None
    labels: dict[str, str] | None = None


async def update_device(conn: asyncpg.Connection, device_id: str, changes: DeviceChanges) -> DeviceRecord:
    """Apply `changes` and bump update_time; raises NotFound.

    An empty display name falls back to the id, as on create.
    """
    display_name = changes.display_name
    if display_name == "":
        display_name = device_id
    labels = None if changes.labels is None else json.dumps(changes.labels)
    async with conn.transaction():
        updated = await conn.fetchval(
            "UPDATE devices SET display_name = coalesce($2, display_name), "
            "description = coalesce($3, description), device_type = coalesce($4, device_type), "
            "status = coalesce($5, status), labels = coalesce($6::jsonb, labels), update_time = now() "
            "WHERE device_id = $1 RETURNING device_id",
            device_id,
            display_name,
            changes.description,
            changes.device_type,
            changes.status,
            labels,
        )
        if updated is None:
            raise NotFound(f"device {device_id!r} does not exist")
        return await get_device(conn, device_id)


@dataclass(frozen=True, slots=True)
class DeletedDevice:
    """What went with a deleted device."""

    readings: int
    frames: int


async def delete_device(
    conn: asyncpg.Connection, device_id: str, blobs: FrameBlobStore | None = None
) -> DeletedDevice:
    """Delete a device, its readings in every reading table, its camera frames
    with their images (in `blobs`, the PostgreSQL store by default) and (by
    cascade) its token, offsets, sensors, series, latest values, dead letters,
    thinning reports, cameras and input states.

    One transaction: the device's upload offsets (readings', then frames') are
    locked first, so an ingest commit for the device either lands before the
    delete, and its rows are deleted too, or waits and then finds no device.
    The order is ingest's: a batch transaction holds an offset row and then
    writes rows that reference the device (input states, thinning reports,
    dead letters, cameras), whose foreign keys take a share lock on the device
    row; locking the device row first would deadlock with it. On plain
    PostgreSQL the device's rollup buckets go in the same transaction. Live
    feeds of the device (readings and frames) on every query process hear
    `DeviceDeleted` when the transaction commits, and end. The id is retired:
    `create_device` takes it again only with `reregister`.

    Sensor and series ids are identities and never reused, so rows that
    TimescaleDB's continuous aggregates still hold for them are unreachable
    and age out with the rollup retention. Raises NotFound.
    """
    async with conn.transaction():
        await _lock_device(conn, device_id)
        sensor_ids, series_ids = await _device_keys(conn, device_id)
        readings = await _delete_readings(conn, sensor_ids, series_ids)
        frames = await delete_device_frames(conn, device_id, blobs or PostgresFrameBlobs())
        if await has_rollup_tables(conn):
            await forget_keys(conn, sensor_ids, series_ids)
        await conn.execute("DELETE FROM devices WHERE device_id = $1", device_id)
        await conn.execute(
            "INSERT INTO retired_device_ids (device_id) VALUES ($1) "
            "ON CONFLICT (device_id) DO UPDATE SET delete_time = now()",
            device_id,
        )
        # Inside the transaction: heard only if it commits. Deletes are rare, so the
        # notify queue's commit lock (see live_signal) costs nothing here.
        for channel in (CHANNEL, FRAMES_CHANNEL):
            await conn.execute("SELECT pg_notify($1, $2)", channel, DeviceDeleted(device_id).encode())
    return DeletedDevice(readings, frames)


async def _lock_device(conn: asyncpg.Connection, device_id: str) -> None:
    """Lock the device's upload offsets, then its row, in ingest's order (see
    `delete_device`: the other order deadlocks with a batch). Raises NotFound."""
    await conn.execute("SELECT 1 FROM upload_offsets WHERE device_id = $1 FOR UPDATE", device_id)
    await conn.execute("SELECT 1 FROM frame_offsets WHERE device_id = $1 FOR UPDATE", device_id)
    locked = await conn.fetchval("SELECT device_id FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
    if locked is None:
        raise NotFound(f"device {device_id!r} does not exist")


async def _device_keys(conn: asyncpg.Connection, device_id: str) -> tuple[list[int], list[int]]:
    """The device's sensor ids and series ids: the keys its readings and
    rollup buckets are stored under, read before the cascade deletes them."""
    sensor_ids = [
        r["sensor_id"]
        for r in await conn.fetch("SELECT sensor_id FROM sensors WHERE device_id = $1", device_id)
    ]
    series_ids = [
        r["series_id"]
        for r in await conn.fetch("SELECT series_id FROM series WHERE sensor_id = ANY($1::int[])", sensor_ids)
    ]
    return sensor_ids, series_ids


async def _delete_readings(conn: asyncpg.Connection, sensor_ids: list[int], series_ids: list[int]) -> int:
    """Delete the readings of these sensors and series from every reading
    table (no foreign key cascades there); returns how many were deleted."""
    deleted = 0
    for table in TYPED_TABLES:
        status = await conn.execute(f"DELETE FROM {table.table} WHERE sensor_id = ANY($1::int[])", sensor_ids)
        deleted += _row_count(status)
    status = await conn.execute(
        f"DELETE FROM {MEASUREMENTS_TABLE} WHERE series_id = ANY($1::int[])", series_ids
    )
    return deleted + _row_count(status)


def _row_count(status: str) -> int:
    """Rows affected, from a command tag such as 'DELETE 42'."""
    return int(status.rsplit(" ", 1)[-1])
