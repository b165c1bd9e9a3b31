"""Client-side: send an operator API key with every call of a channel.

`grpc.access_token_call_credentials` would do this, but gRPC sends call
credentials only over TLS, and the local stack's Envoy listens in clear on
loopback; an interceptor adds the same `authorization: Bearer <key>`
metadata on either. A call that sets its own `authorization` keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from sensormesh_core.tokens import AUTHORIZATION_KEY


def _with_bearer(metadata: Any, key: str) -> list[tuple[str, str | bytes]]:
    pairs = list(metadata or ())
    if not any(k.lower() == AUTHORIZATION_KEY for k, _ in pairs):
        pairs.append((AUTHORIZATION_KEY, f"Bearer {key}"))
    return pairs


class _AioBearer:
    """What the four asyncio interceptors share: the key, and call details that carry it."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*_with_bearer(details.metadata, self._key)),
            details.credentials,
            details.wait_for_ready,
        )


# One class per kind of call: grpc.aio files each channel interceptor under the first kind it
# is an instance of (an if/elif chain), so one object of all four kinds would see unary calls only.
class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str | bytes]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _SyncBearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, key: str) -> None:
        self._key = key

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, _with_bearer(details.metadata, self._key))

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def aio_interceptors(key: str | None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for `grpc.aio.*_channel(..., interceptors=...)`; none without a key."""
    if key is None:
        return []
    return [_AioUnaryUnary(key), _AioUnaryStream(key), _AioStreamUnary(key), _AioStreamStream(key)]


def with_key(channel: grpc.Channel, key: str | None) -> grpc.Channel:
    """`channel`, sending `key` with every call (unchanged without a key)."""
    return channel if key is None else grpc.intercept_channel(channel, _SyncBearer(key))
