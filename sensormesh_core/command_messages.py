"""A stored command as the contract's `Command` message (for operators and for the device)."""

from __future__ import annotations

from sensormesh.v1 import command_pb2

from sensormesh_core.command_parameters import as_struct
from sensormesh_core.storage.commands import CommandRecord


def command_message(record: CommandRecord) -> command_pb2.Command:
    message = command_pb2.Command(
        command_id=record.command_id,
        device_id=record.device_id,
        name=record.name,
        parameters=as_struct(record.parameters),
        state=record.state,  # type: ignore[arg-type]
        creator=record.creator,
        request_id=record.request_id,
        error_message=record.error_message,
        delivery_count=record.delivery_count,
    )
    message.create_time.FromDatetime(record.create_time)
    message.expire_time.FromDatetime(record.expire_time)
    message.result_timeout.FromTimedelta(record.result_timeout)
    for field, value in (
        ("send_time", record.send_time),
        ("deliver_time", record.deliver_time),
        ("finish_time", record.finish_time),
    ):
        if value is not None:
            getattr(message, field).FromDatetime(value)
    if record.result is not None:
        message.result.CopyFrom(as_struct(record.result))
    return message
