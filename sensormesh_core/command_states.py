"""A command's states (the contract's CommandState numbers), by name, and which are final."""

from __future__ import annotations

from sensormesh.v1 import command_pb2

QUEUED: int = command_pb2.COMMAND_STATE_QUEUED
SENT: int = command_pb2.COMMAND_STATE_SENT
DELIVERED: int = command_pb2.COMMAND_STATE_DELIVERED
SUCCEEDED: int = command_pb2.COMMAND_STATE_SUCCEEDED
FAILED: int = command_pb2.COMMAND_STATE_FAILED
EXPIRED: int = command_pb2.COMMAND_STATE_EXPIRED
TIMED_OUT: int = command_pb2.COMMAND_STATE_TIMED_OUT
CANCELED: int = command_pb2.COMMAND_STATE_CANCELED
UNFINISHED = (QUEUED, SENT, DELIVERED)

STATE_NAMES: dict[int, str] = {
    value.number: value.name.removeprefix("COMMAND_STATE_")
    for value in command_pb2.DESCRIPTOR.enum_types_by_name["CommandState"].values
    if value.number
}
"""QUEUED, SENT, ...: what people read (logs, the CLI, metric labels)."""
STATES_BY_NAME = {name: number for number, name in STATE_NAMES.items()}
