"""What a device carries beyond its registry row: sensors with their series,
the last state of each agent input, thinning totals, the dead-letter count,
its cameras with their newest frame and frames thinned, and its frame mark.

Read together for GetDevice (ListDevices shows only the registry row), in one
round trip per table, all indexed by device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    quantity: str
    unit: str


@dataclass(frozen=True, slots=True)
class SensorInfo:
    name: str
    create_time: datetime
    series: tuple[SeriesInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class InputInfo:
    """The last reported state of one agent input (InputState enum number)."""

    input: str
    state: int
    last_error: str
    error_count: int
    observe_time: datetime


@dataclass(frozen=True, slots=True)
class ThinnedInfo:
    """Readings a device reported thinned for one sensor, summed over reports."""

    sensor: str
    count: int
    first_sample_time: datetime
    last_sample_time: datetime


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """A camera of a device: its newest frame, and frames the device reported thinned."""

    name: str
    create_time: datetime
    last_sequence: int
    last_capture_time: datetime
    thinned_count: int


@dataclass(frozen=True, slots=True)
class DeviceDetails:
    sensors: tuple[SensorInfo, ...] = ()
    inputs: tuple[InputInfo, ...] = ()
    thinned: tuple[ThinnedInfo, ...] = ()
    rejected_count: int = 0
    cameras: tuple[CameraInfo, ...] = ()
    committed_frame_sequence: int = 0


async def device_details(conn: asyncpg.Connection, device_id: str) -> DeviceDetails:
    """Sensors (by name, series by quantity), inputs, thinning and rejections of a device."""
    series_rows = await conn.fetch(
        "SELECT s.name, s.create_time, se.quantity, se.unit FROM sensors s "
        "LEFT JOIN series se USING (sensor_id) WHERE s.device_id = $1 ORDER BY s.name, se.quantity",
        device_id,
    )
    sensors: dict[str, tuple[datetime, list[SeriesInfo]]] = {}
    for row in series_rows:
        _, series = sensors.setdefault(row["name"], (row["create_time"], []))
        if row["quantity"] is not None:
            series.append(SeriesInfo(row["quantity"], row["unit"]))
    input_rows = await conn.fetch(
        "SELECT input, state, last_error, error_count, observe_time FROM device_inputs "
        "WHERE device_id = $1 ORDER BY input",
        device_id,
    )
    thinned_rows = await conn.fetch(
        "SELECT sensor, sum(count)::bigint AS count, min(first_sample_time) AS first_sample_time, "
        "max(last_sample_time) AS last_sample_time FROM thinning_reports WHERE device_id = $1 "
        "GROUP BY sensor ORDER BY sensor",
        device_id,
    )
    rejected = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE device_id = $1", device_id)
    camera_rows = await conn.fetch(
        "SELECT c.name, c.create_time, c.last_sequence, c.last_capture_time, "
        "coalesce((SELECT sum(t.count) FROM frame_thinning_reports t "
        "WHERE t.device_id = c.device_id AND t.camera = c.name), 0)::bigint AS thinned_count "
        "FROM cameras c WHERE c.device_id = $1 ORDER BY c.name",
        device_id,
    )
    frame_mark = await conn.fetchval(
        "SELECT committed_sequence FROM frame_offsets WHERE device_id = $1", device_id
    )
    return DeviceDetails(
        sensors=tuple(
            SensorInfo(name, created, tuple(series)) for name, (created, series) in sensors.items()
        ),
        inputs=tuple(InputInfo(**dict(row)) for row in input_rows),
        thinned=tuple(ThinnedInfo(**dict(row)) for row in thinned_rows),
        rejected_count=int(rejected or 0),
        cameras=tuple(CameraInfo(**dict(row)) for row in camera_rows),
        committed_frame_sequence=int(frame_mark or 0),
    )
