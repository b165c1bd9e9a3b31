"""Where the operator's commands (`sensormesh devices`, `sensormesh watch`) connect.

They speak gRPC to DeviceService and QueryService: through Envoy (the default,
the front door of `sensormesh up` and of a cluster) or straight to a query
service. Flags override these settings.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from pydantic import Field

from sensormesh_core.config import SensormeshSettings


class ClientSettings(SensormeshSettings):
    """The server the operator's commands call."""

    server: str = Field(
        default="127.0.0.1:8080",
        description="host:port of Envoy or a query service, for `sensormesh devices` and `sensormesh watch`.",
    )
    server_tls: bool = Field(
        default=False, description="Use TLS to the server (system roots unless a CA file)."
    )
    server_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle for the server's TLS certificate."
    )


def open_channel(server: str, *, tls: bool = False, ca_file: Path | None = None) -> grpc.Channel:
    """A blocking gRPC channel to `server`; TLS with the system's roots or `ca_file`."""
    if not tls and ca_file is None:
        return grpc.insecure_channel(server)
    roots = ca_file.read_bytes() if ca_file is not None else None
    return grpc.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=roots))


def open_aio_channel(server: str, *, tls: bool = False, ca_file: Path | None = None) -> grpc.aio.Channel:
    """The asyncio twin of `open_channel` (live feeds)."""
    if not tls and ca_file is None:
        return grpc.aio.insecure_channel(server)
    roots = ca_file.read_bytes() if ca_file is not None else None
    return grpc.aio.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=roots))
