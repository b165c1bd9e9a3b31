"""`sensormesh watch DEVICE`: a device's readings as they are committed (QueryService.WatchReadings).

On a terminal: a table of the device's series (newest value, sample time,
samples per second) refreshed in place. In a pipe: one line per reading,
`<sample time> <sensor> quantity=value unit ...`. The feed reconnects by
itself when the server goes away (restart, connection recycling), replaying
from the last reading it showed; Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sensormesh_cli.client import add_client_arguments

if TYPE_CHECKING:
    from sensormesh.v1 import query_pb2, reading_pb2

    from sensormesh_cli.client import ClientSettings
    from sensormesh_cli.watch_view import DeviceView

REPLAY_LIMIT = timedelta(minutes=55)  # the service refuses a start time more than an hour back
RETRYABLE = ("UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("device_id", metavar="DEVICE")
    parser.add_argument("--sensor", action="append", default=[], help="only this sensor; repeat for more")
    parser.add_argument(
        "--quantity", action="append", default=[], help="only this quantity, e.g. temperature"
    )
    parser.add_argument("--since", help="first replay the readings of this last while, e.g. 5m (at most 55m)")
    parser.add_argument("--count", type=int, help="exit after this many readings")
    parser.add_argument("--plain", action="store_true", help="one line per reading even on a terminal")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from gateway_agent.durations import Duration

    try:
        span: timedelta = Duration.parse(value)
    except ValueError as error:
        raise ValueError(f"--since {value}: {error}") from None
    if span > REPLAY_LIMIT:
        raise ValueError(f"--since {value}: at most {int(REPLAY_LIMIT.total_seconds() // 60)}m")
    return datetime.now(UTC) - span


def run(args: argparse.Namespace) -> int:
    from sensormesh_cli.client import settings_from

    settings = settings_from(args)
    try:
        start = _since(args.since)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    live = sys.stdout.isatty() and not args.plain
    return asyncio.run(_watch(args, settings, start, live))


async def _watch(
    args: argparse.Namespace, settings: ClientSettings, start: datetime | None, live: bool
) -> int:
    import grpc
    from sensormesh.v1 import query_pb2

    from sensormesh_cli.client import describe_error
    from sensormesh_cli.watch_view import DeviceView

    request = query_pb2.WatchReadingsRequest(
        device_id=args.device_id, sensors=args.sensor, quantities=args.quantity
    )
    view = DeviceView(args.device_id, settings.server, frozenset(args.quantity))
    follow = asyncio.ensure_future(_follow(settings, request, start, view, args.count, live))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, follow.cancel)
    try:
        await follow
    except asyncio.CancelledError:
        pass  # Ctrl-C: a normal way to end
    except grpc.aio.AioRpcError as error:
        print(f"error: {describe_error(error, settings.server)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _follow(
    settings: ClientSettings,
    request: query_pb2.WatchReadingsRequest,
    start: datetime | None,
    view: DeviceView,
    count: int | None,
    live: bool,
) -> None:
    if live:
        try:
            from sensormesh_cli.watch_live import LiveTable
        except ImportError:  # rich comes with the `local` extra; without it, lines
            live = False
    if live:
        with LiveTable(view) as table:
            await _stream(settings, request, start, view, count, table.refresh)
    else:
        await _stream(settings, request, start, view, count, None)


async def _stream(
    settings: ClientSettings,
    request: query_pb2.WatchReadingsRequest,
    start: datetime | None,
    view: DeviceView,
    count: int | None,
    refresh: Callable[[], None] | None,
) -> None:
    """Follow the feed, reconnecting with backoff; returns after `count` readings."""
    import grpc
    from sensormesh.v1 import query_pb2_grpc

    from gateway_agent.backoff import Backoff
    from sensormesh_cli.client import open_aio_channel
    from sensormesh_cli.watch_view import sample_time

    backoff = Backoff(0.5, 10.0)
    last: datetime | None = start
    while True:
        _replay_from(request, last, start)
        try:
            async with open_aio_channel(settings) as channel:
                call = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(request)
                await call.initial_metadata()  # sent once the subscription is registered
                view.state = "live"
                backoff.reset()
                _notify(refresh)
                async for message in call:
                    readings = _show(message, view, count, refresh)
                    if readings:
                        last = max(sample_time(r) for r in readings)
                    if count is not None and view.readings >= count:
                        return
        except grpc.aio.AioRpcError as error:
            if error.code().name not in RETRYABLE:
                raise
            view.state = f"reconnecting ({error.code().name.lower()})"
        else:
            view.state = "reconnecting (the server ended the feed)"
        if refresh is None:
            print(f"# {view.state}", file=sys.stderr)
        _notify(refresh)
        await asyncio.sleep(backoff.next_delay())


def _replay_from(
    request: query_pb2.WatchReadingsRequest, last: datetime | None, start: datetime | None
) -> None:
    """Ask for what follows the last reading shown (from `start` itself until one was), so a
    reconnect neither repeats nor skips readings; past the service's replay window, only new ones."""
    if last is not None and datetime.now(UTC) - last < REPLAY_LIMIT:
        request.start_time.FromDatetime(last + timedelta(microseconds=1) if last != start else last)
    else:
        request.ClearField("start_time")


def _show(
    message: query_pb2.WatchReadingsResponse,
    view: DeviceView,
    count: int | None,
    refresh: Callable[[], None] | None,
) -> list[reading_pb2.Reading]:
    """Take one message's readings into the view, no more than `count` in all, and show them: as
    lines in a pipe, by redrawing the table on a terminal. Returns the readings taken, whose
    newest sample time is where a reconnect resumes."""
    from sensormesh_cli.watch_view import line

    readings = list(message.readings)
    if count is not None:
        readings = readings[: count - view.readings]
    view.add(readings, message.missed_count)
    if refresh is None:
        if message.missed_count:
            print(f"# {message.missed_count} readings missed (this output did not keep up)")
        if readings:
            print("\n".join(line(r, view.only) for r in readings), flush=True)
    else:
        refresh()
    return readings


def _notify(refresh: Callable[[], None] | None) -> None:
    if refresh is not None:
        refresh()
