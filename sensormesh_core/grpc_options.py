"""gRPC server options the services share: how much call metadata they take, and the
connection ageing and keepalive of the operator-facing ones (query, control).

grpc refuses metadata over 8 KiB (soft limit: some calls) and 16 KiB (hard
limit: every call) with RESOURCE_EXHAUSTED, which Envoy's transcoder turns into
429 "retry later" for a REST client. Envoy takes up to 60 KiB of request
headers (`max_request_headers_kb` in envoy/envoy.yaml) and forwards them, a
REST query string among them (as `x-envoy-original-path`), so the services take
64 KiB: whatever passes Envoy reaches the handler, which names the field that
is too long or has too many items.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

MAX_METADATA_BYTES = 64 * 1024


def metadata_options() -> list[tuple[str, int]]:
    """Options for `grpc.aio.server`: the metadata limits above."""
    return [
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ]


def operator_server_options(
    *,
    max_receive_bytes: int,
    max_connection_age: timedelta,
    max_connection_age_grace: timedelta = timedelta(minutes=5),
    keepalive_time: timedelta = timedelta(seconds=30),
    keepalive_timeout: timedelta = timedelta(seconds=10),
) -> list[tuple[str, Any]]:
    """Options for a service that clients reach through Envoy: connections are closed after
    `max_connection_age` (GOAWAY), so long streams rebalance across replicas; idle connections
    are pinged to find dead peers, and clients may ping every 10 s."""

    def ms(value: timedelta) -> int:
        return int(value.total_seconds() * 1000)

    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        *metadata_options(),
        ("grpc.max_connection_age_ms", ms(max_connection_age)),
        ("grpc.max_connection_age_grace_ms", ms(max_connection_age_grace)),
        ("grpc.keepalive_time_ms", ms(keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
    ]
