"""What `sensormesh commands` prints: a line per change, tables and details for people, JSON with --json."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import command_pb2, command_pb2_grpc

from sensormesh_cli.devices_output import table
from sensormesh_core.command_parameters import as_struct
from sensormesh_core.command_states import STATE_NAMES, SUCCEEDED, UNFINISHED

TIMEOUT_S = 30.0
PAGE = 1000


def _json(message: Any) -> str:
    return json_format.MessageToJson(message, indent=2)


def _time(value: Timestamp, present: bool) -> str:
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if present else "-"


def _state(command: command_pb2.Command) -> str:
    return STATE_NAMES.get(command.state, "?")


def _seconds(later: Timestamp, earlier: Timestamp) -> float:
    return (later.ToNanoseconds() - earlier.ToNanoseconds()) / 1e9


def sent(
    stub: command_pb2_grpc.CommandServiceStub, args: argparse.Namespace, values: dict[str, Any]
) -> command_pb2.Command:
    request = command_pb2.SendCommandRequest(
        device_id=args.device_id, name=args.name, parameters=as_struct(values), request_id=args.request_id
    )
    if args.ttl is not None:
        request.ttl.FromNanoseconds(int(args.ttl * 1e9))
    if args.timeout is not None:
        request.result_timeout.FromNanoseconds(int(args.timeout * 1e9))
    command: command_pb2.Command = stub.SendCommand(request, timeout=TIMEOUT_S).command
    if args.json and not args.wait:
        print(_json(command))
    elif not args.json:
        print(f"command {command.command_id} {command.name} to {command.device_id}: {_state(command)}")
    return command


def waited(stub: command_pb2_grpc.CommandServiceStub, command: command_pb2.Command, *, as_json: bool) -> int:
    """Follow `command` to its final state; 0 if it succeeded."""
    request = command_pb2.WatchCommandsRequest(device_id=command.device_id, command_id=command.command_id)
    last = command
    for change in stub.WatchCommands(request):
        if not change.HasField("command"):
            continue  # a heartbeat
        if not as_json and change.command.state != last.state:
            print(f"  {_state(change.command)}")
        last = change.command
        if last.state not in UNFINISHED:
            break
    if as_json:
        print(_json(last))
    else:
        print(outcome(last))
    return 0 if last.state == SUCCEEDED else 1


def outcome(command: command_pb2.Command) -> str:
    """The end of a command in a few lines: state, round trip, result or error."""
    line = f"{_state(command)} in {_seconds(command.finish_time, command.create_time) * 1000:.0f} ms"
    if command.HasField("deliver_time"):
        line += f" (delivered after {_seconds(command.deliver_time, command.create_time) * 1000:.0f} ms)"
    lines = [line]
    if command.HasField("result"):
        lines.append("result " + json_format.MessageToJson(command.result, indent=None))
    if command.error_message:
        lines.append(f"error  {command.error_message}")
    return "\n".join(lines)


def _pages(
    stub: command_pb2_grpc.CommandServiceStub, device_id: str, states: list[int], limit: int
) -> Iterator[command_pb2.Command]:
    token, left = "", limit
    while left > 0:
        request = command_pb2.ListCommandsRequest(
            device_id=device_id,
            states=states,  # type: ignore[arg-type]
            page_size=min(left, PAGE),
            page_token=token,
        )
        page = stub.ListCommands(request, timeout=TIMEOUT_S)
        yield from page.commands
        left -= len(page.commands)
        token = page.next_page_token
        if not token:
            return


def listed(
    stub: command_pb2_grpc.CommandServiceStub, device_id: str, states: list[int], limit: int, *, as_json: bool
) -> int:
    found = list(_pages(stub, device_id, states, limit))
    if as_json:
        print(_json(command_pb2.ListCommandsResponse(commands=found)))
        return 0
    rows = [["ID", "DEVICE", "COMMAND", "STATE", "SENT", "FINISHED", "BY"]]
    for c in found:
        rows.append(
            [
                str(c.command_id),
                c.device_id,
                c.name,
                _state(c),
                _time(c.create_time, True),
                _time(c.finish_time, c.HasField("finish_time")),
                c.creator,
            ]
        )
    print(table(rows))
    print(f"{len(found)} command{'s' if len(found) != 1 else ''}")
    return 0


def details(c: command_pb2.Command) -> str:
    parameters = json_format.MessageToJson(c.parameters, indent=None) if c.parameters.fields else "-"
    lines = [
        f"command       {c.command_id} {c.name}",
        f"device        {c.device_id}",
        f"parameters    {parameters}",
        f"state         {_state(c)}",
        f"sent by       {c.creator}" + (f" (request id {c.request_id})" if c.request_id else ""),
        f"created       {_time(c.create_time, True)}",
        f"expires       {_time(c.expire_time, True)} if not delivered",
        f"offered       {_time(c.send_time, c.HasField('send_time'))} ({c.delivery_count} times)",
        f"delivered     {_time(c.deliver_time, c.HasField('deliver_time'))}",
        f"finished      {_time(c.finish_time, c.HasField('finish_time'))}",
    ]
    if c.HasField("result"):
        lines.append(f"result        {json_format.MessageToJson(c.result, indent=None)}")
    if c.error_message:
        lines.append(f"error         {c.error_message}")
    return "\n".join(lines)


def shown(
    stub: command_pb2_grpc.CommandServiceStub, device_id: str, command_id: int, *, as_json: bool
) -> int:
    request = command_pb2.GetCommandRequest(device_id=device_id, command_id=command_id)
    command = stub.GetCommand(request, timeout=TIMEOUT_S).command
    print(_json(command) if as_json else details(command))
    return 0


def canceled(
    stub: command_pb2_grpc.CommandServiceStub, device_id: str, command_id: int, *, as_json: bool
) -> int:
    request = command_pb2.CancelCommandRequest(device_id=device_id, command_id=command_id)
    command = stub.CancelCommand(request, timeout=TIMEOUT_S).command
    print(_json(command) if as_json else f"command {command.command_id}: {_state(command)}")
    return 0


def watched(stub: command_pb2_grpc.CommandServiceStub, device_id: str) -> int:
    for change in stub.WatchCommands(command_pb2.WatchCommandsRequest(device_id=device_id)):
        if change.HasField("command"):
            c = change.command
            print(f"{c.device_id}  {c.command_id}  {c.name}  {_state(c)}", flush=True)
    return 0
