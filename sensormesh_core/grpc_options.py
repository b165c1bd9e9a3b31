"""gRPC server options both services share: how much call metadata they take.

grpc refuses metadata over 8 KiB (soft limit: some calls) and 16 KiB (hard
limit: every call) with RESOURCE_EXHAUSTED, which Envoy's transcoder turns into
429 "retry later" for a REST client. Envoy takes up to 60 KiB of request
headers (`max_request_headers_kb` in envoy/envoy.yaml) and forwards them, a
REST query string among them (as `x-envoy-original-path`), so the services take
64 KiB: whatever passes Envoy reaches the handler, which names the field that
is too long or has too many items.
"""

from __future__ import annotations

MAX_METADATA_BYTES = 64 * 1024


def metadata_options() -> list[tuple[str, int]]:
    """Options for `grpc.aio.server`: the metadata limits above."""
    return [
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ]
