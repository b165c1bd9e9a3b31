"""Errors raised in handlers reach clients as rich gRPC statuses, over a real
grpc.aio server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_core import errors
from sensormesh_core.grpc_errors import ErrorMappingInterceptor


class FailingIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Raises whatever the test puts in `error`."""

    error: Exception = errors.NotFound("device 'pi-9' does not exist")

    async def GetUploadOffset(self, request, context):  # type: ignore[no-untyped-def]
        raise self.error

    async def UploadReadings(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for _ in request_iterator:
            raise self.error
        return ingest_pb2.UploadReadingsResponse()


@pytest.fixture
async def stub() -> AsyncIterator[tuple[ingest_pb2_grpc.IngestServiceStub, FailingIngest]]:
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    servicer = FailingIngest()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel), servicer
    await server.stop(None)


def _details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, object] = {}
    for detail in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found[cls.DESCRIPTOR.name] = message
    return found


async def test_not_found_maps_to_its_code_with_a_reason(stub) -> None:  # type: ignore[no-untyped-def]
    client, _ = stub
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetUploadOffset(ingest_pb2.GetUploadOffsetRequest(device_id="pi-9"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "device 'pi-9' does not exist"
    info = _details(caught.value)["ErrorInfo"]
    assert info.reason == "NOT_FOUND" and info.domain == "sensormesh.dev"  # type: ignore[attr-defined]


async def test_invalid_argument_carries_field_violations(stub) -> None:  # type: ignore[no-untyped-def]
    client, servicer = stub
    servicer.error = errors.InvalidArgument(
        "bad batch", [errors.FieldViolation("readings[3].sequence", "must be greater than 41")]
    )

    async def batches() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        yield ingest_pb2.UploadReadingsRequest(device_id="pi-1")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.UploadReadings(batches())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = _details(caught.value)["BadRequest"]
    violation = bad_request.field_violations[0]  # type: ignore[attr-defined]
    assert (violation.field, violation.description) == ("readings[3].sequence", "must be greater than 41")


async def test_unexpected_errors_are_internal_without_leaking(stub, caplog) -> None:  # type: ignore[no-untyped-def]
    client, servicer = stub
    servicer.error = RuntimeError("password=hunter2 in a stack trace")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetUploadOffset(ingest_pb2.GetUploadOffsetRequest(device_id="pi-1"))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")
    assert "event=rpc_failed" in caplog.text
