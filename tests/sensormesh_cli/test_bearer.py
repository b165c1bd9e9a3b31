"""The CLI's key interceptors send `authorization: Bearer <key>` on every kind of call.

An in-process server answers each call with the authorization it was sent,
so a call kind the interceptors miss shows up as an empty answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from sensormesh_cli.bearer import aio_interceptors, with_key

KEY = "smak_test-key"
SERVICE = "test.Echo"


def _authorization(context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    sent = dict(context.invocation_metadata() or ())
    value = sent.get("authorization", "")
    return value.encode() if isinstance(value, str) else value


async def _unary_unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return _authorization(context)


async def _unary_stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    yield _authorization(context)


async def _stream_unary(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> bytes:
    async for _ in requests:
        pass
    return _authorization(context)


async def _stream_stream(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    async for _ in requests:
        pass
    yield _authorization(context)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    handlers = {
        "UnaryUnary": grpc.unary_unary_rpc_method_handler(_unary_unary),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(_unary_stream),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(_stream_unary),
        "StreamStream": grpc.stream_stream_rpc_method_handler(_stream_stream),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _requests() -> AsyncIterator[bytes]:
    yield b"one"


async def test_an_aio_channel_sends_the_key_on_every_kind_of_call(target: str) -> None:
    expected = f"Bearer {KEY}".encode()
    async with grpc.aio.insecure_channel(target, interceptors=aio_interceptors(KEY)) as channel:
        assert await channel.unary_unary(f"/{SERVICE}/UnaryUnary")(b"x", timeout=10) == expected
        assert [m async for m in channel.unary_stream(f"/{SERVICE}/UnaryStream")(b"x", timeout=10)] == [
            expected
        ]
        assert await channel.stream_unary(f"/{SERVICE}/StreamUnary")(_requests(), timeout=10) == expected
        streamed = channel.stream_stream(f"/{SERVICE}/StreamStream")(_requests(), timeout=10)
        assert [m async for m in streamed] == [expected]


async def test_a_call_that_sets_its_own_authorization_keeps_it(target: str) -> None:
    own = (("authorization", "Bearer smdt_device-token"),)
    async with grpc.aio.insecure_channel(target, interceptors=aio_interceptors(KEY)) as channel:
        call = channel.unary_stream(f"/{SERVICE}/UnaryStream")(b"x", metadata=own, timeout=10)
        assert [m async for m in call] == [b"Bearer smdt_device-token"]


def _blocking_calls(target: str) -> None:
    expected = f"Bearer {KEY}".encode()
    with with_key(grpc.insecure_channel(target), KEY) as channel:
        assert channel.unary_unary(f"/{SERVICE}/UnaryUnary")(b"x", timeout=10) == expected
        assert list(channel.unary_stream(f"/{SERVICE}/UnaryStream")(b"x", timeout=10)) == [expected]
        assert channel.stream_unary(f"/{SERVICE}/StreamUnary")(iter([b"one"]), timeout=10) == expected
        assert list(channel.stream_stream(f"/{SERVICE}/StreamStream")(iter([b"one"]), timeout=10)) == [
            expected
        ]


async def test_a_blocking_channel_sends_the_key_on_every_kind_of_call(target: str) -> None:
    await asyncio.to_thread(_blocking_calls, target)  # the server runs on this test's event loop


def test_without_a_key_nothing_is_added() -> None:
    assert aio_interceptors(None) == []
    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        assert with_key(channel, None) is channel
    finally:
        channel.close()
