"""Sensors and series are created on first sight, once, even when several
ingest replicas meet them at the same moment."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ingest_service.catalog import SensorCatalog, Wanted
from sensormesh_core.errors import NotFound
from sensormesh_core.storage.registry import create_device, delete_device

pytestmark = pytest.mark.storage

WANTED = Wanted(
    typed=frozenset({("imu", "mpu6050-0x68"), ("environment", "bme280-0x76"), ("system", "system")}),
    measurements=frozenset({("soil-probe", "soil_moisture", "%"), ("system", "fan_speed", "rpm")}),
)


async def test_replicas_resolving_the_same_names_at_once_agree_on_the_ids(
    database_url: str, db: asyncpg.Connection
) -> None:
    await create_device(db, "pi-1")
    replicas = [SensorCatalog() for _ in range(6)]
    conns = [await asyncpg.connect(database_url) for _ in replicas]
    try:
        views = await asyncio.gather(
            *(c.resolve(conn, "pi-1", WANTED) for c, conn in zip(replicas, conns, strict=True))
        )
    finally:
        for conn in conns:
            await conn.close()

    first = views[0]
    for view in views[1:]:
        assert (view.typed, view.typed_series, view.measurements) == (
            first.typed,
            first.typed_series,
            first.measurements,
        )
    assert await db.fetchval("SELECT count(*) FROM sensors") == 4
    # 6 IMU + 3 environment + 3 system quantities, and two generic series
    assert await db.fetchval("SELECT count(*) FROM series") == 14
    assert await db.fetchval("SELECT unit FROM series WHERE quantity = 'fan_speed'") == "rpm"
    assert first.measurements[("system", "fan_speed")] != first.measurements[("soil-probe", "soil_moisture")]


async def test_resolving_for_a_device_that_does_not_exist_is_not_found(db: asyncpg.Connection) -> None:
    with pytest.raises(NotFound):
        await SensorCatalog().resolve(db, "ghost-pi", WANTED)


async def test_a_measurement_named_in_two_units_at_once_is_one_series_not_a_missing_device(
    db: asyncpg.Connection,
) -> None:
    """Found by the columnar property test: a batch naming soil_moisture in % and in A made the
    device look deleted (NOT_FOUND), since two wanted series came back as one."""
    await create_device(db, "pi-1")
    wanted = Wanted(
        measurements=frozenset({("soil-probe", "soil_moisture", "%"), ("soil-probe", "soil_moisture", "A")})
    )
    view = await SensorCatalog().resolve(db, "pi-1", wanted)
    assert list(view.measurements) == [("soil-probe", "soil_moisture")]
    assert await db.fetchval("SELECT count(*) FROM series WHERE quantity = 'soil_moisture'") == 1


class _DeletesBefore:
    """A connection that deletes the device (DeleteDevice, on another connection)
    just before the statement starting with `before` runs: the race of a device
    deleted while its first batch is being prepared."""

    def __init__(self, conn: asyncpg.Connection, deleter: asyncpg.Connection, before: str) -> None:
        self._conn, self._deleter, self._before = conn, deleter, before

    async def _maybe_delete(self, sql: str) -> None:
        if sql.startswith(self._before):
            await delete_device(self._deleter, "pi-1")

    async def execute(self, sql: str, *args: object) -> str:
        await self._maybe_delete(sql)
        return str(await self._conn.execute(sql, *args))

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        await self._maybe_delete(sql)
        return list(await self._conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: object) -> object:
        return await self._conn.fetchval(sql, *args)


@pytest.mark.parametrize("before", ["SELECT name, sensor_id", "INSERT INTO series", "SELECT s.sensor_id"])
async def test_a_device_deleted_while_its_names_resolve_is_not_found(
    database_url: str, db: asyncpg.Connection, before: str
) -> None:
    await create_device(db, "pi-1")
    deleter = await asyncpg.connect(database_url)
    catalog = SensorCatalog()
    try:
        with pytest.raises(NotFound):
            await catalog.resolve(_DeletesBefore(db, deleter, before), "pi-1", WANTED)  # type: ignore[arg-type]
    finally:
        await deleter.close()
    assert catalog.view("pi-1").incarnation is None  # forgotten: a re-registered pi-1 starts afresh
