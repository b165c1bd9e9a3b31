"""Sensors and series, created on first sight and remembered per process.

A batch names sensors (and, for generic measurements, quantities); storage
wants integer ids. The first time a process meets a name it inserts the row
with `ON CONFLICT DO NOTHING` and reads the id back in a second statement:
under READ COMMITTED the insert waits for any other replica inserting the
same name, so the second statement (a new snapshot) always finds the row.
Typed payloads get their series (one per quantity) at the same time, for
latest values.

Ids are only valid for one incarnation of a device: a device deleted and
registered again under the same id has new sensors. The catalog remembers the
device's `create_time`; the writer compares it in the batch's transaction and
asks for a fresh resolve when it changed (`StaleCatalog`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg

from ingest_service.pg_time import micros
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.schema import TYPED_BY_PAYLOAD

log = logging.getLogger(__name__)


class StaleCatalog(Exception):
    """The device was deleted and registered again since its ids were cached."""


@dataclass(slots=True)
class DeviceCatalog:
    """The ids of one device's sensors and series, as the decoder looks them up."""

    incarnation: int | None = None  # devices.create_time, PostgreSQL microseconds
    # payload kind -> sensor name -> sensor_id, for sensors whose typed series exist
    typed: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in TYPED_BY_PAYLOAD})
    # (sensor_id, quantity) -> series_id, for the typed quantities
    typed_series: dict[tuple[int, str], int] = field(default_factory=dict)
    # (sensor name, quantity) -> series_id, for generic measurements
    measurements: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wanted:
    """Names a batch uses that the catalog does not know yet."""

    typed: frozenset[tuple[str, str]] = frozenset()  # (payload kind, sensor name)
    measurements: frozenset[tuple[str, str, str]] = frozenset()  # (sensor name, quantity, unit)

    def __bool__(self) -> bool:
        return bool(self.typed or self.measurements)


_INSERT_SENSORS = (
    "INSERT INTO sensors (device_id, name) SELECT $1, unnest($2::text[]) "
    "ON CONFLICT (device_id, name) DO NOTHING"
)
_SELECT_SENSORS = "SELECT name, sensor_id FROM sensors WHERE device_id = $1 AND name = ANY($2::text[])"
_INSERT_SERIES = (
    "INSERT INTO series (sensor_id, quantity, unit) "
    "SELECT * FROM unnest($1::integer[], $2::text[], $3::text[]) "
    "ON CONFLICT (sensor_id, quantity) DO NOTHING"
)
_SELECT_SERIES = (
    "SELECT s.sensor_id, s.quantity, s.series_id FROM series s "
    "JOIN unnest($1::integer[], $2::text[]) AS w(sensor_id, quantity) "
    "ON s.sensor_id = w.sensor_id AND s.quantity = w.quantity"
)


class SensorCatalog:
    """Per-process cache of sensor and series ids, by device."""

    def __init__(self) -> None:
        self._devices: dict[str, DeviceCatalog] = {}

    def view(self, device_id: str) -> DeviceCatalog:
        """The device's ids (empty until resolved); the decoder reads these dicts."""
        found = self._devices.get(device_id)
        if found is None:
            found = self._devices[device_id] = DeviceCatalog()
        return found

    def _gone(self, device_id: str) -> NotFound:
        self.forget(device_id)
        log.info("event=device_deleted_while_resolving device=%s", device_id)
        return NotFound(f"device {device_id!r} does not exist")

    def forget(self, device_id: str) -> None:
        """Drop what is known of a device (deleted, or registered again)."""
        self._devices.pop(device_id, None)

    async def resolve(self, conn: asyncpg.Connection, device_id: str, wanted: Wanted) -> DeviceCatalog:
        """Create what `wanted` names, if missing, and learn the ids. Outside any transaction."""
        device = self.view(device_id)
        if device.incarnation is None:
            created = await conn.fetchval("SELECT create_time FROM devices WHERE device_id = $1", device_id)
            if created is None:
                raise NotFound(f"device {device_id!r} does not exist")
            device.incarnation = micros(created)
        names = sorted({name for _, name in wanted.typed} | {name for name, _, _ in wanted.measurements})
        # Each statement runs on its own: the device may be deleted (DeleteDevice) between
        # any two of them. Then a foreign key refuses the insert, or a row just inserted
        # is gone when read back; either way the batch gets NOT_FOUND, not INTERNAL.
        try:
            await conn.execute(_INSERT_SENSORS, device_id, names)
            sensor_ids = {
                row["name"]: row["sensor_id"] for row in await conn.fetch(_SELECT_SENSORS, device_id, names)
            }
            if len(sensor_ids) < len(names):
                raise self._gone(device_id)
            series: list[tuple[int, str, str]] = []
            for kind, name in wanted.typed:
                series += [(sensor_ids[name], q.name, q.unit) for q in TYPED_BY_PAYLOAD[kind].quantities]
            series += [(sensor_ids[name], quantity, unit) for name, quantity, unit in wanted.measurements]
            columns = [list(column) for column in zip(*series, strict=True)] if series else [[], [], []]
            await conn.execute(_INSERT_SERIES, *columns)
            series_ids = {
                (row["sensor_id"], row["quantity"]): row["series_id"]
                for row in await conn.fetch(_SELECT_SERIES, columns[0], columns[1])
            }
        except asyncpg.ForeignKeyViolationError as exc:
            raise self._gone(device_id) from exc
        # One series per sensor and quantity: a measurement named in two units in one batch is
        # one series (its first unit), not a series missing because the device went.
        if len(series_ids) < len({(sensor_id, quantity) for sensor_id, quantity, _ in series}):
            raise self._gone(device_id)
        for kind, name in wanted.typed:
            sensor_id = sensor_ids[name]
            for q in TYPED_BY_PAYLOAD[kind].quantities:
                device.typed_series[(sensor_id, q.name)] = series_ids[(sensor_id, q.name)]
            device.typed[kind][name] = sensor_id
        for name, quantity, _ in wanted.measurements:
            device.measurements[(name, quantity)] = series_ids[(sensor_ids[name], quantity)]
        log.info(
            "event=catalog_resolved device=%s sensors=%d series=%d", device_id, len(names), len(series_ids)
        )
        return device
