"""Settings of `sensormesh up` beyond those it shares with the services.

The database (`SENSORMESH_DATABASE_URL`, `SENSORMESH_DATA_DIR`, ...) and the
ingest and query addresses (`SENSORMESH_INGEST_LISTEN`,
`SENSORMESH_QUERY_LISTEN`) are the services' own settings; this adds Envoy's
two addresses. Command-line flags override all of them.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sensormesh_core.config import StorageSettings


def split_host_port(value: str) -> tuple[str, int]:
    """("127.0.0.1", 8080) from "127.0.0.1:8080"; IPv6 hosts in brackets ("[::1]:8080")."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


class StackSettings(StorageSettings):
    """Where the local stack's Envoy listens."""

    envoy_listen: str = Field(
        default="127.0.0.1:8080",
        description="host:port of Envoy's listener in `sensormesh up`: REST, gRPC and gRPC-Web.",
    )
    envoy_admin_listen: str = Field(
        default="127.0.0.1:9901",
        description="host:port of Envoy's admin interface in `sensormesh up` (stats, clusters, /ready).",
    )

    @field_validator("envoy_listen", "envoy_admin_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value
