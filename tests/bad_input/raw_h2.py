"""A gRPC call written frame by frame over a plain socket, so a test can do
what no gRPC library does: stop in the middle of a message or of an HTTP/2
frame, reset the stream, send header bytes that are not ASCII, or drop the
TCP connection without a goodbye (RST)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.errors
import h2.events


def grpc_frame(message: bytes) -> bytes:
    """One length-prefixed gRPC message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


class RawCall:
    """One HTTP/2 connection carrying one gRPC call, driven by hand."""

    def __init__(self, port: int, path: str, metadata: Sequence[tuple[str, str | bytes]] = ()) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b":path", path.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *((k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in metadata),
        ]
        self.conn.send_headers(self.stream_id, headers)
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def send(self, data: bytes, *, end: bool = False) -> None:
        """Bytes of the request body (gRPC frames, or parts of one)."""
        self.conn.send_data(self.stream_id, data, end_stream=end)
        self._flush()

    def send_cut_frame(self, data: bytes, keep: int) -> None:
        """An HTTP/2 DATA frame carrying `data`, of which only the first `keep` bytes are written."""
        self.conn.send_data(self.stream_id, data)
        frame = self.conn.data_to_send()
        self.sock.sendall(frame[: 9 + keep])  # 9 bytes of frame header, then part of the payload

    def reset(self) -> None:
        """RST_STREAM(CANCEL): the client gives up on the call, the connection stays."""
        self.conn.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        self._flush()

    def outcome(self, within: float = 10.0) -> str:
        """How the call ended: its grpc-status, "reset" (RST_STREAM or GOAWAY), or "closed"."""
        deadline = time.monotonic() + within
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return "closed"
            if not data:
                return "closed"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    return "reset"
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    status = dict(event.headers).get(b"grpc-status")
                    if status is not None:
                        return status.decode()
            self._flush()
        raise AssertionError(f"the call did not end within {within} s")

    def abort(self) -> None:
        """Drop the connection with a TCP RST: no END_STREAM, no GOAWAY, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
