"""The gRPC channel to the ingest service: TLS, keepalive, compression and tracing.

TLS uses the system's root certificates unless a CA file is configured (a
private CA or a self-signed ingest). Plaintext is only for loopback and
tests, and must be asked for. The device token is not part of the channel:
the uplink sends it as `authorization: Bearer` metadata on every call, the
same on plaintext and TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

# Every call also has a deadline (the uplink bounds each stream), which is
# what ends a call on a link that died silently. Keepalive pings are a second
# guard: one after 60 s without traffic, only while a call is active, so that
# they stay within gRPC servers' default ping policy (a server counts pings
# that arrive while it sends nothing; a stream's only response comes at its end).
_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 0),  # the uplink resumes from the server's offset itself
]


def open_channel(
    target: str,
    *,
    tls: bool,
    ca_file: Path | None = None,
    gzip: bool = False,
    interceptors: list[Any] | None = None,
) -> grpc.aio.Channel:
    """A channel to `target` ("host:port"); call `await channel.close()` when done."""
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    if not tls:
        return grpc.aio.insecure_channel(
            target, options=_OPTIONS, compression=compression, interceptors=interceptors
        )
    root_certificates = ca_file.read_bytes() if ca_file is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return grpc.aio.secure_channel(
        target, credentials, options=_OPTIONS, compression=compression, interceptors=interceptors
    )
