"""Between registry records and `sensormesh.v1.Device` messages, and the
update mask rules (AIP-134) for UpdateDevice."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import device_pb2, ingest_pb2, query_pb2

from sensormesh_core.errors import FieldViolation, InvalidArgument
from sensormesh_core.storage.device_details import DeviceDetails
from sensormesh_core.storage.link_extremes import SensorValue
from sensormesh_core.storage.registry import (
    DEVICE_STATUS_ACTIVE,
    DEVICE_TYPE_GATEWAY,
    DeviceChanges,
    DeviceRecord,
)

UPDATABLE = ("display_name", "description", "type", "status", "labels")


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def device_message(record: DeviceRecord, details: DeviceDetails | None = None) -> device_pb2.Device:
    device = device_pb2.Device(
        device_id=record.device_id,
        display_name=record.display_name,
        description=record.description,
        type=record.device_type,  # type: ignore[arg-type]
        status=record.status,  # type: ignore[arg-type]
        labels=record.labels,
        committed_sequence=record.committed_sequence,
    )
    if record.create_time is not None:
        device.create_time.CopyFrom(_stamp(record.create_time))
    if record.update_time is not None:
        device.update_time.CopyFrom(_stamp(record.update_time))
    if record.last_upload_time is not None:
        device.last_upload_time.CopyFrom(_stamp(record.last_upload_time))
    if record.lowest_battery is not None:
        device.lowest_battery_level.CopyFrom(_latest_value(record.lowest_battery))
    if record.weakest_signal is not None:
        device.weakest_signal_strength.CopyFrom(_latest_value(record.weakest_signal))
    if details is not None:
        _add_details(device, details)
    return device


def _latest_value(value: SensorValue) -> query_pb2.LatestValue:
    return query_pb2.LatestValue(
        sensor=value.sensor,
        quantity=value.quantity,
        unit=value.unit,
        sample_time=_stamp(value.time),
        value=value.value,
    )


def _add_details(device: device_pb2.Device, details: DeviceDetails) -> None:
    for sensor in details.sensors:
        device.sensors.add(
            name=sensor.name,
            create_time=_stamp(sensor.create_time),
            series=[device_pb2.Series(quantity=s.quantity, unit=s.unit) for s in sensor.series],
        )
    for state in details.inputs:
        device.input_statuses.append(
            ingest_pb2.InputStatus(
                input=state.input,
                state=state.state,  # type: ignore[arg-type]
                last_error=state.last_error,
                error_count=state.error_count,
                observe_time=_stamp(state.observe_time),
            )
        )
    for thinned in details.thinned:
        device.thinned.add(
            sensor=thinned.sensor,
            count=thinned.count,
            first_sample_time=_stamp(thinned.first_sample_time),
            last_sample_time=_stamp(thinned.last_sample_time),
        )
    device.rejected_count = details.rejected_count
    for camera in details.cameras:
        device.cameras.add(
            name=camera.name,
            create_time=_stamp(camera.create_time),
            last_sequence=camera.last_sequence,
            last_capture_time=_stamp(camera.last_capture_time),
            thinned_count=camera.thinned_count,
        )
    device.committed_frame_sequence = details.committed_frame_sequence


def create_arguments(device: device_pb2.Device) -> dict[str, object]:
    """Keyword arguments of registry.create_device; unset enums take their defaults."""
    return {
        "display_name": device.display_name,
        "description": device.description,
        "device_type": device.type or DEVICE_TYPE_GATEWAY,
        "status": device.status or DEVICE_STATUS_ACTIVE,
        "labels": dict(device.labels),
    }


def _mask_paths(request: device_pb2.UpdateDeviceRequest) -> list[str]:
    """The paths to update: the mask's, `*` for all, or (empty mask) the fields set."""
    paths = list(request.update_mask.paths)
    if paths == ["*"]:
        return list(UPDATABLE)
    if paths:
        bad = [
            FieldViolation(
                f"update_mask.paths[{i}]", f"{path!r} is not updatable; use one of {', '.join(UPDATABLE)}"
            )
            for i, path in enumerate(paths)
            if path not in UPDATABLE
        ]
        if bad:
            raise InvalidArgument("invalid update_mask", bad)
        return paths
    device = request.device
    values = {
        "display_name": device.display_name,
        "description": device.description,
        "type": device.type,
        "status": device.status,
        "labels": device.labels,
    }
    return [path for path, value in values.items() if value]


def changes_from(request: device_pb2.UpdateDeviceRequest) -> DeviceChanges:
    """The registry changes an UpdateDevice asks for. A masked field left at its
    default is reset: display name to the id, type and status to their defaults."""
    paths = set(_mask_paths(request))
    device = request.device
    return DeviceChanges(
        display_name=device.display_name if "display_name" in paths else None,
        description=device.description if "description" in paths else None,
        device_type=(device.type or DEVICE_TYPE_GATEWAY) if "type" in paths else None,
        status=(device.status or DEVICE_STATUS_ACTIVE) if "status" in paths else None,
        labels=dict(device.labels) if "labels" in paths else None,
    )
