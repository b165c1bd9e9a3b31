"""A TCP proxy between agents and the ingest service that the test can break.

    proxy = FaultProxy(upstream=("127.0.0.1", 50051)); proxy.start()
    proxy.cut()      # reset every open connection; new ones are reset at once
    proxy.stall()    # connections stay open but no byte moves either way (a dead link)
    proxy.restore()  # forward again; what a stall held moves on, late

It runs its own event loop in a thread, so the test's blocking calls never
hold traffic up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from enum import Enum


class Mode(Enum):
    FORWARD = "forward"
    CUT = "cut"
    STALL = "stall"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a dropped route or a rebooted router does, instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `upstream` until told otherwise."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.mode = Mode.FORWARD
        self.connections_cut = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._stalled: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # clear only while stalled
        self._flowing.set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def _call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.CUT:
            _reset(writer)
            return
        if self.mode is Mode.STALL:
            self._stalled.add(writer)  # accepted, never answered
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)  # the service is down: the agent sees the connection fail
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()  # a stall holds the bytes: the link is dead, not closed
                if self.mode is Mode.CUT:
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def cut(self) -> None:
        """Reset every connection, and every new one until `restore()`."""
        self._call(self._cut())

    async def _cut(self) -> None:
        self._set_mode(Mode.CUT)
        for pair in list(self._pairs):
            for side in pair:
                _reset(side)
            self.connections_cut += 1
        for writer in list(self._stalled):
            _reset(writer)
        self._stalled.clear()

    def stall(self) -> None:
        """Stop moving bytes on open connections and answer none of the new ones."""
        self._call(self._stall())

    def restore(self) -> None:
        """Forward again: bytes held by a stall move on (late, as after a long retransmission);
        connections accepted during the stall, never answered, are reset."""
        self._call(self._restore())

    async def _restore(self) -> None:
        for writer in list(self._stalled):
            _reset(writer)
        self._stalled.clear()
        self._set_mode(Mode.FORWARD)

    async def _stall(self) -> None:
        self._set_mode(Mode.STALL)

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode is Mode.STALL:
            self._flowing.clear()
        else:
            self._flowing.set()  # held pipes wake: to forward, or to see the cut and end

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
