"""One ConnectCommands stream as the agent holds it: what it sends, in order, and which results
still await the service's `result_stored`; and a journal row's result as the message that reports it.

The link (link.py) makes a Session per stream and drops it when the stream ends;
what must outlive a stream (commands, results) lives in the journal, not here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.journal import JournalEntry, Outcome
from sensormesh_core.command_parameters import as_struct


class Requests:
    """What the agent sends on one stream, in order. An iterator object rather than an async
    generator: gRPC may close the request iterator while it waits, which a generator refuses."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[delivery.ConnectCommandsRequest | None] = asyncio.Queue()

    def put(self, request: delivery.ConnectCommandsRequest) -> None:
        self._queue.put_nowait(request)

    def close(self) -> None:
        """End the iteration (gRPC's task sending the requests then ends too)."""
        self._queue.put_nowait(None)

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> delivery.ConnectCommandsRequest:
        request = await self._queue.get()
        if request is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return request


@dataclass
class Session:
    """One ConnectCommands stream: what goes out, and which results await `result_stored`."""

    requests: Requests = field(default_factory=Requests)
    opened: bool = False
    unstored: set[int] = field(default_factory=set)
    stored: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, request: delivery.ConnectCommandsRequest) -> None:
        self.requests.put(request)


def result_message(entry: JournalEntry, outcome: Outcome) -> delivery.ConnectCommandsRequest:
    finish_time = Timestamp()
    finish_time.FromNanoseconds(outcome.finish_time_ns)
    return delivery.ConnectCommandsRequest(
        result=delivery.CommandResult(
            command_id=entry.command_id,
            succeeded=outcome.succeeded,
            result=as_struct(outcome.result),
            error_message=outcome.error,
            finish_time=finish_time,
        )
    )
