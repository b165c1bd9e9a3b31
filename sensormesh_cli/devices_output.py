"""What `sensormesh devices` prints: tables and details for people, the API's JSON with --json."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import device_pb2, device_pb2_grpc, ingest_pb2, query_pb2

from sensormesh_core.tokens import write_token_file

TIMEOUT_S = 30.0
# `devices list --order-by`: ListDevices' order_by for each choice.
ORDERS = {"id": "", "battery": "lowest_battery_level.value", "signal": "weakest_signal_strength.value"}


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, indent=2)


def _time(value: Timestamp, present: bool = True) -> str:
    if not present or (value.seconds == 0 and value.nanos == 0):
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def _enum(value: int, enum: str, prefix: str) -> str:
    return (
        device_pb2.DESCRIPTOR.enum_types_by_name[enum]
        .values_by_number[value]
        .name.removeprefix(prefix)
        .lower()
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def print_token(device_id: str, token: str, token_file: Path | None) -> None:
    if token_file is not None:
        write_token_file(token_file, token)
        print(f"device {device_id} created; its token is in {token_file} (mode 0600), shown only now:")
    else:
        print(f"device {device_id} created; its token (shown only now, keep it for the agent):")
    print(token)


def created(
    stub: device_pb2_grpc.DeviceServiceStub,
    device: device_pb2.Device,
    token_file: Path | None,
    *,
    as_json: bool,
    reregister: bool = False,
) -> int:
    request = device_pb2.CreateDeviceRequest(device=device, reregister=reregister)
    response = stub.CreateDevice(request, timeout=TIMEOUT_S)
    if as_json:
        if token_file is not None:
            write_token_file(token_file, response.token)
        print(_json(response))
    else:
        print_token(response.device.device_id, response.token, token_file)
    return 0


def rotated(stub: device_pb2_grpc.DeviceServiceStub, device_id: str, token_file: Path | None) -> int:
    response = stub.RotateDeviceToken(
        device_pb2.RotateDeviceTokenRequest(device_id=device_id), timeout=TIMEOUT_S
    )
    if token_file is not None:
        write_token_file(token_file, response.token)
        print(f"device {device_id}: new token in {token_file} (mode 0600); the old one stops within 10 s:")
    else:
        print(f"device {device_id}: new token (shown only now); the old one stops within 10 s:")
    print(response.token)
    return 0


def _extreme(value: query_pb2.LatestValue, present: bool) -> str:
    """A device's lowest battery or weakest signal as a cell: "23.1 %", "-91 dBm"."""
    if not present:
        return "-"
    unit = "dBm" if value.unit == "dB[mW]" else value.unit
    return f"{value.value:g} {unit}".rstrip()


def _pages(
    stub: device_pb2_grpc.DeviceServiceStub, status: int, type_: int, order_by: str = ""
) -> Iterator[device_pb2.Device]:
    token = ""
    while True:
        request = device_pb2.ListDevicesRequest(
            page_size=1000,
            page_token=token,
            status=status,  # type: ignore[arg-type]
            type=type_,  # type: ignore[arg-type]
            order_by=order_by,
        )
        page = stub.ListDevices(request, timeout=TIMEOUT_S)
        yield from page.devices
        token = page.next_page_token
        if not token:
            return


def listed(
    stub: device_pb2_grpc.DeviceServiceStub, status: int, type_: int, *, as_json: bool, order_by: str = ""
) -> int:
    devices = list(_pages(stub, status, type_, order_by))
    if as_json:
        print(_json(device_pb2.ListDevicesResponse(devices=devices)))
        return 0
    rows = [["DEVICE", "TYPE", "STATUS", "LAST UPLOAD", "SEQUENCE", "BATTERY", "SIGNAL", "NAME"]]
    for d in devices:
        rows.append(
            [
                d.device_id,
                _enum(d.type, "DeviceType", "DEVICE_TYPE_"),
                _enum(d.status, "DeviceStatus", "DEVICE_STATUS_"),
                _time(d.last_upload_time, d.HasField("last_upload_time")),
                str(d.committed_sequence),
                _extreme(d.lowest_battery_level, d.HasField("lowest_battery_level")),
                _extreme(d.weakest_signal_strength, d.HasField("weakest_signal_strength")),
                d.display_name,
            ]
        )
    print(table(rows))
    print(f"{len(devices)} device{'s' if len(devices) != 1 else ''}")
    return 0


def details(d: device_pb2.Device) -> str:
    """A device as a person reads it: registry fields, then sensors, inputs, losses."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted(d.labels.items())) or "-"
    lines = [
        f"device        {d.device_id}",
        f"name          {d.display_name}",
        f"description   {d.description or '-'}",
        f"type          {_enum(d.type, 'DeviceType', 'DEVICE_TYPE_')}",
        f"status        {_enum(d.status, 'DeviceStatus', 'DEVICE_STATUS_')}",
        f"labels        {labels}",
        f"created       {_time(d.create_time)}",
        f"last upload   {_time(d.last_upload_time, d.HasField('last_upload_time'))}",
        f"sequence      {d.committed_sequence} committed",
        f"rejected      {d.rejected_count} readings in the dead-letter table",
    ]
    for label, value, present in (
        ("battery ", d.lowest_battery_level, d.HasField("lowest_battery_level")),
        ("signal  ", d.weakest_signal_strength, d.HasField("weakest_signal_strength")),
    ):
        if present:
            lines.append(
                f"{label}      {_extreme(value, True)}, {'lowest' if label.startswith('b') else 'weakest'} "
                f"of its sensors ({value.sensor}, {_time(value.sample_time)})"
            )
    if d.sensors:
        lines += ["", "sensors"]
        for sensor in d.sensors:
            series = ", ".join(f"{s.quantity} ({s.unit})" if s.unit else s.quantity for s in sensor.series)
            lines.append(f"  {sensor.name}: {series}")
    if d.input_statuses:
        lines += ["", "inputs"]
        for status in d.input_statuses:
            state = ingest_pb2.InputState.Name(status.state)
            error = f", {status.error_count} errors, last: {status.last_error}" if status.error_count else ""
            lines.append(f"  {status.input}: {state.removeprefix('INPUT_STATE_').lower()}{error}")
    for thinned in d.thinned:
        lines.append(
            f"thinned       {thinned.sensor}: {thinned.count} readings between "
            f"{_time(thinned.first_sample_time)} and {_time(thinned.last_sample_time)}"
        )
    return "\n".join(lines)


def got(stub: device_pb2_grpc.DeviceServiceStub, device_id: str, *, as_json: bool) -> int:
    device = stub.GetDevice(device_pb2.GetDeviceRequest(device_id=device_id), timeout=TIMEOUT_S).device
    print(_json(device) if as_json else details(device))
    return 0


def updated(
    stub: device_pb2_grpc.DeviceServiceStub, device: device_pb2.Device, paths: list[str], *, as_json: bool
) -> int:
    request = device_pb2.UpdateDeviceRequest(device=device, update_mask=field_mask_pb2.FieldMask(paths=paths))
    response = stub.UpdateDevice(request, timeout=TIMEOUT_S)
    print(_json(response.device) if as_json else details(response.device))
    return 0


def deleted(stub: device_pb2_grpc.DeviceServiceStub, device_id: str) -> int:
    response = stub.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=device_id), timeout=TIMEOUT_S)
    print(
        f"device {device_id} deleted with {response.deleted_reading_count} readings"
        f" and {response.deleted_frame_count} camera frames"
    )
    return 0
