"""The authentication matrix: every RPC refuses a missing or unknown token,
another device's id, and a disabled device; a device deleted while its token
is cached gets NOT_FOUND; nothing is written for a refused call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer
from sensormesh_core.access.device_tokens import DeviceTokens
from sensormesh_core.access.principal import Principal
from sensormesh_core.errors import PermissionDenied, Unauthenticated
from sensormesh_core.storage.registry import DEVICE_STATUS_DISABLED
from tests.ingest_service.conftest import Device, details
from tests.ingest_service.readings import batch, mark, reading, stored, stream

pytestmark = pytest.mark.storage
UPLOAD_FORMS = ("rows", "columns")

Call = Callable[[ingest_pb2_grpc.IngestServiceStub, str, Any], Awaitable[object]]


async def _upload(stub: ingest_pb2_grpc.IngestServiceStub, device_id: str, metadata: Any) -> object:
    return await stub.UploadReadings(stream([batch(device_id, 1, 5)]), metadata=metadata)


async def _offset(stub: ingest_pb2_grpc.IngestServiceStub, device_id: str, metadata: Any) -> object:
    return await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device_id), metadata=metadata
    )


async def _write(stub: ingest_pb2_grpc.IngestServiceStub, device_id: str, metadata: Any) -> object:
    request = ingest_pb2.WriteReadingsRequest(device_id=device_id, readings=[reading(1)])
    return await stub.WriteReadings(request, metadata=metadata)


CALLS: dict[str, Call] = {"UploadReadings": _upload, "GetUploadOffset": _offset, "WriteReadings": _write}
BAD_CREDENTIALS = {
    "no metadata": None,
    "no token": (("authorization", "Bearer "),),
    "another scheme": (("authorization", "Basic Z3JlZW5ob3VzZTpwaQ=="),),
    "unknown token": (("authorization", "Bearer smdt_not-a-token-anyone-was-given"),),
}


@pytest.mark.parametrize("rpc", CALLS)
@pytest.mark.parametrize("credentials", BAD_CREDENTIALS)
async def test_calls_without_a_valid_token_are_unauthenticated(
    rpc: str,
    credentials: str,
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    db: asyncpg.Connection,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await CALLS[rpc](stub, device.device_id, BAD_CREDENTIALS[credentials])

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert details(refused.value)["ErrorInfo"].reason == "UNAUTHENTICATED"  # type: ignore[attr-defined]
    assert await mark(db, device.device_id) == 0


@pytest.mark.parametrize("rpc", CALLS)
async def test_a_device_cannot_act_as_another(
    rpc: str,
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    register: Callable[[str], Awaitable[Device]],
    db: asyncpg.Connection,
) -> None:
    other = await register("barn-pi-2")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await CALLS[rpc](stub, other.device_id, device.metadata)

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "greenhouse-pi-1" in (refused.value.details() or "")
    assert await mark(db, other.device_id) == 0
    assert (await stored(db, other.device_id)).sequences == []
    assert await db.fetchval("SELECT count(*) FROM sensors") == 0  # nothing created for the other device


@pytest.mark.parametrize("rpc", CALLS)
async def test_a_disabled_device_is_refused(
    rpc: str, stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    await db.execute(
        "UPDATE devices SET status = $1 WHERE device_id = $2", DEVICE_STATUS_DISABLED, device.device_id
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await CALLS[rpc](stub, device.device_id, device.metadata)

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "disabled" in (refused.value.details() or "")
    assert await mark(db, device.device_id) == 0


async def test_a_device_disabled_while_its_token_is_cached_cannot_write(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    await _upload(stub, device.device_id, device.metadata)  # the token is cached now
    await db.execute(
        "UPDATE devices SET status = $1 WHERE device_id = $2", DEVICE_STATUS_DISABLED, device.device_id
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadReadings(stream([batch(device.device_id, 6, 10)]), metadata=device.metadata)

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await mark(db, device.device_id) == 5


async def test_a_device_deleted_while_its_token_is_cached_is_not_found(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    await _upload(stub, device.device_id, device.metadata)
    await db.execute("DELETE FROM devices WHERE device_id = $1", device.device_id)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _write(stub, device.device_id, device.metadata)

    assert refused.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_device_registered_again_writes_under_its_new_sensors(
    stub: ingest_pb2_grpc.IngestServiceStub,
    device: Device,
    register: Callable[[str], Awaitable[Device]],
    db: asyncpg.Connection,
) -> None:
    await _upload(stub, device.device_id, device.metadata)  # sensor ids cached for the first incarnation
    await db.execute("DELETE FROM devices WHERE device_id = $1", device.device_id)
    again = await register(device.device_id)

    response = await stub.UploadReadings(stream([batch(again.device_id, 1, 5)]), metadata=again.metadata)

    assert response.accepted_count == 5
    assert (await stored(db, again.device_id)).sequences == [1, 2, 3, 4, 5]  # joined through the new sensors


async def test_token_lookups_are_cached_for_the_ttl(
    ingest: IngestServer, device: Device, db: asyncpg.Connection
) -> None:
    now = [0.0]
    auth = DeviceTokens(ingest.app.pool, ttl=10, clock=lambda: now[0])
    assert (await auth.authenticate(device.token)).device_id == device.device_id
    await db.execute("UPDATE devices SET token_hash = 'rotated' WHERE device_id = $1", device.device_id)

    now[0] = 9.0
    assert (await auth.authenticate(device.token)).device_id == device.device_id  # from the cache
    now[0] = 10.5
    with pytest.raises(Unauthenticated):
        await auth.authenticate(device.token)


def test_authorize_names_both_devices() -> None:
    with pytest.raises(PermissionDenied, match="'pi-a', not 'pi-b'"):
        DeviceTokens.authorize(Principal("device", "pi-a"), "pi-b")


async def test_a_rotated_token_ends_its_open_upload_stream_within_the_bound(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    """The old token stops within 10 s (cache and stream re-check), even on a stream it opened."""
    import asyncio
    import time

    from sensormesh_core.config import MAX_CREDENTIAL_DELAY
    from sensormesh_core.storage.registry import rotate_token

    sent = asyncio.Event()

    async def one_batch_then_wait() -> Any:
        yield batch(device.device_id, 1, 5)
        sent.set()
        await asyncio.Event().wait()  # an agent between batches

    call = stub.UploadReadings(one_batch_then_wait(), metadata=device.metadata)
    await asyncio.wait_for(sent.wait(), 5)
    for _ in range(100):  # the stream is admitted and its first batch committed
        if await mark(db, device.device_id) == 5:
            break
        await asyncio.sleep(0.05)
    new_token = await rotate_token(db, device.device_id)
    rotated_at = time.monotonic()

    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(call, MAX_CREDENTIAL_DELAY.total_seconds() + 2)
    assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - rotated_at <= MAX_CREDENTIAL_DELAY.total_seconds() + 1
    fresh = await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id),
        metadata=(("authorization", f"Bearer {new_token}"),),
    )
    assert fresh.committed_sequence == 5  # the batch sent before the rotation was kept
