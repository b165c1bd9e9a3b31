"""Calls of the CommandService the tests share."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2
from sensormesh.v1 import command_pb2, command_pb2_grpc

from sensormesh_core.command_parameters import as_struct


async def send(
    stub: command_pb2_grpc.CommandServiceStub,
    device_id: str,
    name: str,
    *,
    ttl: timedelta | None = None,
    result_timeout: timedelta | None = None,
    request_id: str = "",
    **parameters: object,
) -> command_pb2.Command:
    request = command_pb2.SendCommandRequest(
        device_id=device_id, name=name, parameters=as_struct(parameters), request_id=request_id
    )
    if ttl is not None:
        request.ttl.CopyFrom(
            duration_pb2.Duration(seconds=int(ttl.total_seconds()), nanos=ttl.microseconds * 1000)
        )
    if result_timeout is not None:
        request.result_timeout.FromTimedelta(result_timeout)
    return (await stub.SendCommand(request)).command


async def get(
    stub: command_pb2_grpc.CommandServiceStub, device_id: str, command_id: int
) -> command_pb2.Command:
    request = command_pb2.GetCommandRequest(device_id=device_id, command_id=command_id)
    return (await stub.GetCommand(request)).command
