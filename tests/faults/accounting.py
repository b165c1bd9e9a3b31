"""Every reading an agent took, accounted for: stored exactly once, thinned, refused, or still buffered.

A reading is compared by content, not only by number: its sequence, sensor,
sample time (microseconds, as PostgreSQL keeps it) and every value. The
server side is read from the reading tables themselves, so a row stored twice,
stored with other values, or stored without having been taken shows up.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sensormesh.v1 import reading_pb2

from tests.faults.ledger import LedgerTap

# (sequence, sensor, sample time in µs since the Unix epoch, kind, values...)
Row = tuple[Any, ...]
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# One statement per table: their value columns differ in type.
_STORED = (
    """SELECT sequence, s.name, time, 'imu', acceleration_x, acceleration_y, acceleration_z,
              angular_rate_x, angular_rate_y, angular_rate_z
         FROM imu_readings JOIN sensors s USING (sensor_id) WHERE s.device_id = $1""",
    """SELECT sequence, s.name, time, 'environment', temperature, relative_humidity, pressure,
              NULL, NULL, NULL
         FROM environment_readings JOIN sensors s USING (sensor_id) WHERE s.device_id = $1""",
    """SELECT sequence, s.name, time, 'system', cpu_temperature, disk_used, disk_free, NULL, NULL, NULL
         FROM system_readings JOIN sensors s USING (sensor_id) WHERE s.device_id = $1""",
    """SELECT m.sequence, s.name, m.time, 'measurement', q.quantity, q.unit, m.value, NULL, NULL, NULL
         FROM measurements m JOIN series q USING (series_id) JOIN sensors s USING (sensor_id)
        WHERE s.device_id = $1""",
)


def _micros(stamp: datetime) -> int:
    return (stamp - _UNIX_EPOCH) // _MICROSECOND


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def canonical(sequence: int, reading: reading_pb2.Reading) -> Row:
    """A taken reading as the server should hold it."""
    time = reading.sample_time.seconds * 1_000_000 + reading.sample_time.nanos // 1000
    head = (sequence, reading.sensor, time)
    kind = reading.WhichOneof("payload")
    if kind == "imu":
        p = reading.imu
        return (*head, "imu", p.acceleration_x_mps2, p.acceleration_y_mps2, p.acceleration_z_mps2,
                p.angular_rate_x_dps, p.angular_rate_y_dps, p.angular_rate_z_dps)  # fmt: skip
    if kind == "environment":
        e = reading.environment
        values = (
            e.temperature_celsius,
            _optional(e, "relative_humidity_percent"),
            _optional(e, "pressure_hpa"),
        )
        return (*head, "environment", *values, None, None, None)
    if kind == "system":
        s = reading.system
        values = (
            _optional(s, "cpu_temperature_celsius"),
            _optional(s, "disk_used_bytes"),
            _optional(s, "disk_free_bytes"),
        )
        return (*head, "system", *values, None, None, None)
    m = reading.measurement
    return (*head, "measurement", m.name, m.unit, m.value, None, None, None)


def _stored_row(record: asyncpg.Record) -> Row:
    values = list(record.values())
    values[2] = _micros(values[2])
    return tuple(values)


def digest(rows: list[Row]) -> str:
    """A checksum of a set of readings: the same readings give the same digest, in any order."""
    hasher = hashlib.sha256()
    for row in sorted(rows, key=repr):
        hasher.update(repr(row).encode())
    return hasher.hexdigest()[:16]


@dataclass(frozen=True)
class Account:
    """What became of the readings one agent took."""

    device_id: str
    taken: int
    committed_sequence: int
    stored: int
    duplicates: int  # rows stored more than once
    foreign: int  # rows stored that the agent never took, or with other values
    thinned: int  # taken, dropped by the agent's thinning, reported
    thinned_reported: int  # what the server and the buffer's unsent reports say was thinned
    rejected: int  # taken, refused by the server into dead_letters
    buffered: int  # taken, above the mark, still in the agent's buffer
    lost: int  # taken and none of the above
    taken_digest: str  # of the readings that should be stored
    stored_digest: str

    def assert_exact(self) -> None:
        """Every taken reading stored once or accounted for; nothing else stored."""
        assert self.duplicates == 0, self
        assert self.foreign == 0, self
        assert self.lost == 0, self
        assert self.thinned == self.thinned_reported, self
        assert self.taken_digest == self.stored_digest, self
        assert self.taken == self.stored + self.thinned + self.rejected + self.buffered, self


async def _server_side(
    conn: asyncpg.Connection, device_id: str
) -> tuple[list[Row], int, set[int], Counter[str]]:
    stored = [_stored_row(r) for statement in _STORED for r in await conn.fetch(statement, device_id)]
    mark = await conn.fetchval(
        "SELECT committed_sequence FROM upload_offsets WHERE device_id = $1", device_id
    )
    rejected = {
        int(r[0])
        for r in await conn.fetch("SELECT sequence FROM dead_letters WHERE device_id = $1", device_id)
    }
    reports: Counter[str] = Counter()
    for sensor, count in await conn.fetch(
        "SELECT sensor, sum(count) FROM thinning_reports WHERE device_id = $1 GROUP BY sensor", device_id
    ):
        reports[sensor] += int(count)
    return stored, int(mark or 0), rejected, reports


def unsent_reports(buffer: Path, mark: int) -> Counter[str]:
    """Thinning the buffer recorded that no acknowledged batch has carried yet."""
    reports: Counter[str] = Counter()
    with sqlite3.connect(buffer) as conn:
        for sensor, count in conn.execute(
            "SELECT sensor, sum(count) FROM thinned WHERE sent_with_sequence IS NULL OR sent_with_sequence > ?"
            " GROUP BY sensor",
            (mark,),
        ):
            reports[sensor] += int(count)
    return reports


async def account(conn: asyncpg.Connection, device_id: str, tap: LedgerTap) -> Account:
    """Compare what the agent behind `tap` took with what the server holds (the agent must be stopped)."""
    tap.close()
    base = tap.sequence_base()
    pending_ids = tap.pending()
    stored, mark, rejected, reports = await _server_side(conn, device_id)
    taken = {row_id + base: canonical(row_id + base, reading_pb2.Reading.FromString(payload))
             for row_id, payload in tap.taken.items()}  # fmt: skip
    counts = Counter(row[0] for row in stored)
    duplicates = sum(n - 1 for n in counts.values())
    stored_set = set(stored)
    foreign = sum(1 for row in stored_set if taken.get(row[0]) != row)

    expected: list[Row] = []
    thinned: Counter[str] = Counter()
    buffered = lost = rejected_count = 0
    for sequence, row in taken.items():
        if sequence > mark:
            if sequence - base in pending_ids:
                buffered += 1
            else:
                thinned[row[1]] += 1  # above the mark and gone from the buffer: only thinning does that
        elif row in stored_set:
            expected.append(row)
        elif sequence in rejected:
            rejected_count += 1
        else:
            thinned[row[1]] += 1  # checked against the reports below
    reports += unsent_reports(tap.path, mark)
    for sensor in set(thinned) | set(reports):
        lost += max(0, thinned[sensor] - reports[sensor])
    return Account(
        device_id=device_id,
        taken=len(taken),
        committed_sequence=mark,
        stored=len(stored),
        duplicates=duplicates,
        foreign=foreign,
        thinned=sum(thinned.values()) - lost,
        thinned_reported=sum(reports.values()),
        rejected=rejected_count,
        buffered=buffered,
        lost=lost,
        taken_digest=digest(expected),
        stored_digest=digest(stored),
    )
