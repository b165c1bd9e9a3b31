"""Errors to gRPC status, in one place.

`ErrorMappingInterceptor` wraps every handler of a `grpc.aio` server: a
`SensormeshError` becomes its canonical code with `google.rpc.ErrorInfo` (a
stable reason) and, for bad input, `google.rpc.BadRequest` field violations.
Envoy's transcoder turns the same status into an HTTP status and a JSON body
for REST clients. Anything unexpected is logged with its traceback and
answered INTERNAL without internals leaking to the caller.

Requests are parsed by grpc before a handler runs; bytes protobuf refuses (a
string that is not UTF-8, a corrupt wire format) reach the handler wrapper as
an `Undecodable` and are answered INVALID_ARGUMENT naming the fields
(`sensormesh_core.decode_errors`), not UNKNOWN. On a client stream the
messages before the undecodable one are handled as usual.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sensormesh_core import decode_errors, errors

log = logging.getLogger(__name__)

ERROR_DOMAIN = "sensormesh.dev"

_CODES: dict[type[errors.SensormeshError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code_for(error: errors.SensormeshError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: errors.SensormeshError) -> grpc.Status:
    """The rich status for `error`: code, message, ErrorInfo and BadRequest details."""
    code = status_code_for(error)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    proto = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(proto)


def internal_status() -> grpc.Status:
    proto = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see the service log")
    return rpc_status.to_status(proto)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request protobuf could not parse, in place of the message; refused by the wrapper."""

    error: errors.InvalidArgument


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning an Undecodable instead of raising on bytes it cannot parse."""
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)  # Message.FromString is a bound classmethod

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            return Undecodable(decode_errors.explain(message_class, raw))

    return deserialize


def _decoded(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise request.error
    return request


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _handle(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str) -> None:
    if isinstance(exc, errors.SensormeshError):
        log.info("event=rpc_refused method=%s reason=%s message=%r", method, exc.reason, exc.message)
        await _abort(context, to_status(exc))
    log.exception("event=rpc_failed method=%s", method)
    await _abort(context, internal_status())


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str, *, streaming_request: bool = False
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = _decoded_stream(request) if streaming_request else _decoded(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _handle(context, exc, method)

    return wrapper


def _wrap_streaming(
    behavior: Callable[..., Any], method: str, *, streaming_request: bool = False
) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        return _wrap_unary(behavior, method, streaming_request=streaming_request)

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            request = _decoded_stream(request) if streaming_request else _decoded(request)
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _handle(context, exc, method)

    return wrapper


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns exceptions raised by handlers into gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, streaming_request=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_streaming(handler.unary_stream, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(handler.stream_stream, method, streaming_request=True),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
