"""Writes readings the way the ingest service does, for tests and the query benchmark.

Per batch, in one transaction: take the device's upload offset row (FOR
UPDATE), number the readings after the committed sequence, COPY the rows into
the per-kind reading tables, upsert `latest_values`, move the mark. After the
commit, and outside the transaction, send `pg_notify(CHANNEL, CommitSignal)`.
Sensors and series are created on first sight, as ingest does. On plain
PostgreSQL it takes the rollup gate and records late rows, as ingest does.

The query service's own tests use it instead of the ingest service: it
commits exactly the readings a test names (any sample times, any payload
mix) in one call on the test's connection, with no service process or
token, so those tests stay fast and show query behaviour alone. Everything
that crosses services (live feeds from real uploads, the two-process test,
end to end through Envoy, the benchmark) goes through the real ingest
service instead. It lives in tests/ on purpose.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sensormesh.v1 import reading_pb2

from sensormesh_core.storage.live_signal import CHANNEL, CommitSignal
from sensormesh_core.storage.maintenance import Backend, storage_backend
from sensormesh_core.storage.partitions import PartitionManager, days_between
from sensormesh_core.storage.rollup_gate import GATE_CTE, RECENT, late_ranges, record_late
from sensormesh_core.storage.schema import (
    MEASUREMENT_COLUMNS,
    MEASUREMENTS_TABLE,
    TYPED_BY_PAYLOAD,
    TYPED_TABLES,
)


@dataclass(frozen=True)
class Commit:
    signal: CommitSignal
    commit_time: float  # time.time() right after COMMIT returned


class ReadingWriter:
    """One device-agnostic writer on one connection (not safe for concurrent use)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._sensors: dict[tuple[str, str], int] = {}
        self._series: dict[tuple[int, str], int] = {}
        self._partitions = PartitionManager()
        self._backend: Backend | None = None

    async def _sensor_id(self, device_id: str, name: str) -> int:
        key = (device_id, name)
        if key not in self._sensors:
            self._sensors[key] = await self.conn.fetchval(
                "INSERT INTO sensors (device_id, name) VALUES ($1, $2) ON CONFLICT (device_id, name) "
                "DO UPDATE SET name = EXCLUDED.name RETURNING sensor_id",
                device_id,
                name,
            )
        return self._sensors[key]

    async def _series_id(self, sensor_id: int, quantity: str, unit: str) -> int:
        key = (sensor_id, quantity)
        if key not in self._series:
            self._series[key] = await self.conn.fetchval(
                "INSERT INTO series (sensor_id, quantity, unit) VALUES ($1, $2, $3) "
                "ON CONFLICT (sensor_id, quantity) DO UPDATE SET unit = series.unit RETURNING series_id",
                sensor_id,
                quantity,
                unit,
            )
        return self._series[key]

    async def _rows(
        self, device_id: str, readings: list[reading_pb2.Reading], first_sequence: int
    ) -> tuple[dict[str, list[tuple[Any, ...]]], dict[int, tuple[datetime, float, int]]]:
        """Rows per table, and the last (time, value, sequence) per series."""
        rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        latest: dict[int, tuple[datetime, float, int]] = {}
        for offset, reading in enumerate(readings):
            sequence = first_sequence + offset
            moment = reading.sample_time.ToDatetime(tzinfo=UTC)
            sensor_id = await self._sensor_id(device_id, reading.sensor)
            kind = reading.WhichOneof("payload")
            assert kind is not None
            if kind == "measurement":
                m = reading.measurement
                series_id = await self._series_id(sensor_id, m.name, m.unit)
                rows[MEASUREMENTS_TABLE].append((moment, sequence, series_id, m.value))
                values = {series_id: m.value}
            else:
                table = TYPED_BY_PAYLOAD[kind]
                payload = getattr(reading, kind)
                row: list[Any] = [moment, sequence, sensor_id]
                values = {}
                for q in table.quantities:
                    present = q.required or payload.HasField(q.proto_field)
                    value = getattr(payload, q.proto_field) if present else None
                    row.append(value)
                    if value is not None:
                        values[await self._series_id(sensor_id, q.name, q.unit)] = float(value)
                rows[table.table].append(tuple(row))
            for series_id, value in values.items():
                if series_id not in latest or latest[series_id][0] <= moment:
                    latest[series_id] = (moment, value, sequence)
        return rows, latest

    async def write(
        self, device_id: str, readings: list[reading_pb2.Reading], *, notify: bool = True
    ) -> Commit:
        """Commit one batch for `device_id` and (by default) signal it."""
        if self._backend is None:
            self._backend = await storage_backend(self.conn)
            await self._partitions.load(self.conn)
        times = [r.sample_time.ToDatetime(tzinfo=UTC) for r in readings]
        if self._backend is Backend.PARTITIONED:
            await self._partitions.ensure(self.conn, days_between(min(times), max(times)))
        async with self.conn.transaction():
            late_before = None
            if self._backend is Backend.PARTITIONED:
                # The rollup gate, as ingest takes it (sensormesh_core/storage/rollup_gate.py).
                late_before = await self.conn.fetchval(f"WITH {GATE_CTE} SELECT now FROM gate") - RECENT
            committed = await self.conn.fetchval(
                "SELECT committed_sequence FROM upload_offsets WHERE device_id = $1 FOR UPDATE", device_id
            )
            assert committed is not None, f"device {device_id} is not registered"
            rows, latest = await self._rows(device_id, readings, committed + 1)
            if late_before is not None:
                await record_late(self.conn, late_ranges(rows, late_before))
            for table in TYPED_TABLES:
                if rows.get(table.table):
                    await self.conn.copy_records_to_table(
                        table.table, records=rows[table.table], columns=table.columns
                    )
            if rows.get(MEASUREMENTS_TABLE):
                await self.conn.copy_records_to_table(
                    MEASUREMENTS_TABLE, records=rows[MEASUREMENTS_TABLE], columns=MEASUREMENT_COLUMNS
                )
            await self.conn.executemany(
                "INSERT INTO latest_values (series_id, time, value, sequence) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (series_id) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value, "
                "sequence = EXCLUDED.sequence WHERE latest_values.time <= EXCLUDED.time",
                [(sid, t, v, s) for sid, (t, v, s) in latest.items()],
            )
            last = committed + len(readings)
            await self.conn.execute(
                "UPDATE upload_offsets SET committed_sequence = $2, update_time = now() WHERE device_id = $1",
                device_id,
                last,
            )
        commit_time = time.time()
        signal = CommitSignal(device_id, committed + 1, last, min(times), max(times))
        if notify:
            await self.conn.execute("SELECT pg_notify($1, $2)", CHANNEL, signal.encode())
        return Commit(signal, commit_time)


def imu(sensor: str, moment: datetime, ax: float = 0.0, az: float = 9.80665) -> reading_pb2.Reading:
    reading = reading_pb2.Reading(
        sensor=sensor,
        imu=reading_pb2.ImuPayload(acceleration_x_mps2=ax, acceleration_z_mps2=az, angular_rate_z_dps=1.5),
    )
    reading.sample_time.FromDatetime(moment)
    return reading


def environment(
    sensor: str,
    moment: datetime,
    temperature: float,
    humidity: float | None = None,
    pressure: float | None = None,
) -> reading_pb2.Reading:
    payload = reading_pb2.EnvironmentPayload(temperature_celsius=temperature)
    if humidity is not None:
        payload.relative_humidity_percent = humidity
    if pressure is not None:
        payload.pressure_hpa = pressure
    reading = reading_pb2.Reading(sensor=sensor, environment=payload)
    reading.sample_time.FromDatetime(moment)
    return reading


def measurement(sensor: str, moment: datetime, name: str, value: float, unit: str) -> reading_pb2.Reading:
    reading = reading_pb2.Reading(
        sensor=sensor, measurement=reading_pb2.Measurement(name=name, value=value, unit=unit)
    )
    reading.sample_time.FromDatetime(moment)
    return reading


def link_health(
    sensor: str,
    moment: datetime,
    battery: float | None = None,
    rssi: float | None = None,
    volts: float | None = None,
    quality: float | None = None,
) -> reading_pb2.Reading:
    """A link-health reading with the fields given (battery and quality in %, rssi in dBm)."""
    payload = reading_pb2.LinkHealthPayload(
        battery_level_percent=battery,
        signal_strength_dbm=rssi,
        battery_voltage_volts=volts,
        link_quality_percent=quality,
    )
    reading = reading_pb2.Reading(sensor=sensor, link_health=payload)
    reading.sample_time.FromDatetime(moment)
    return reading
