"""Operator access on the query service: scoped keys see only their devices,
revoked keys and rotated tokens stop within the documented bound (live feeds
included), keys are stored hashed and shown once, and every change is audited."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sensormesh.v1 import (
    access_pb2,
    access_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    device_pb2,
    device_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)

from query_service.server import QueryServer
from sensormesh_core.access.principal import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER
from sensormesh_core.config import MAX_CREDENTIAL_DELAY
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage.registry import create_device
from sensormesh_core.tokens import hash_token
from tests.support.access import bearer, make_key
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def fleet(writer: ReadingWriter) -> list[str]:
    """Four devices: two in the greenhouse, one in the barn, one unlabeled."""
    labels = {
        "gh-1": {"site": "greenhouse"},
        "gh-2": {"site": "greenhouse"},
        "barn-1": {"site": "barn"},
        "x-1": {},
    }
    for device_id, device_labels in labels.items():
        await create_device(writer.conn, device_id, labels=device_labels)
        await writer.write(device_id, [environment("env", NOW, 20.0)])
    return list(labels)


def _channel(server: QueryServer) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")


async def _listed(server: QueryServer, key: str) -> list[str]:
    async with _channel(server) as channel:
        response = await device_pb2_grpc.DeviceServiceStub(channel).ListDevices(
            device_pb2.ListDevicesRequest(), metadata=bearer(key)
        )
    return [d.device_id for d in response.devices]


@pytest.mark.parametrize(
    ("scope", "visible"),
    [
        (DeviceScope(frozenset(), {"site": "greenhouse"}), ["gh-1", "gh-2"]),
        (DeviceScope(frozenset({"barn-1", "x-1"})), ["barn-1", "x-1"]),
    ],
    ids=["labels", "ids"],
)
async def test_a_scoped_key_lists_gets_and_reads_only_its_devices(
    query_server: QueryServer, database_url: str, fleet: list[str], scope: DeviceScope, visible: list[str]
) -> None:
    key = await make_key(database_url, "scoped", ROLE_VIEWER, scope=scope)

    assert await _listed(query_server, key) == sorted(visible)
    async with _channel(query_server) as channel:
        devices = device_pb2_grpc.DeviceServiceStub(channel)
        queries = query_pb2_grpc.QueryServiceStub(channel)
        for device_id in fleet:
            calls = [
                devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device_id), metadata=bearer(key)),
                queries.GetLatestReadings(
                    query_pb2.GetLatestReadingsRequest(device_id=device_id), metadata=bearer(key)
                ),
                queries.ListReadings(
                    query_pb2.ListReadingsRequest(device_id=device_id), metadata=bearer(key)
                ),
            ]
            for call in calls:
                if device_id in visible:
                    await call
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as hidden:
                    await call
                assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
                assert (
                    hidden.value.details() == f"device {device_id!r} does not exist"
                )  # as for a missing one


async def test_a_scoped_key_cannot_watch_another_device(
    query_server: QueryServer, database_url: str, fleet: list[str]
) -> None:
    key = await make_key(database_url, "barn-only", ROLE_VIEWER, scope=DeviceScope(frozenset({"barn-1"})))
    async with _channel(query_server) as channel:
        feed = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
            query_pb2.WatchReadingsRequest(device_id="gh-1"), metadata=bearer(key)
        )
        assert await asyncio.wait_for(feed.code(), 5) is grpc.StatusCode.NOT_FOUND


async def test_a_scoped_key_follows_label_changes(
    query_server: QueryServer, database_url: str, fleet: list[str], admin_key: str
) -> None:
    key = await make_key(
        database_url, "greenhouse", ROLE_VIEWER, scope=DeviceScope(frozenset(), {"site": "greenhouse"})
    )
    async with _channel(query_server) as channel:
        await device_pb2_grpc.DeviceServiceStub(channel).UpdateDevice(
            device_pb2.UpdateDeviceRequest(
                device=device_pb2.Device(device_id="barn-1", labels={"site": "greenhouse"}),
                update_mask={"paths": ["labels"]},
            ),
            metadata=bearer(admin_key),
        )
    assert await _listed(query_server, key) == ["barn-1", "gh-1", "gh-2"]


async def test_a_scoped_key_cannot_manage_keys_or_read_the_audit_log(
    query_server: QueryServer, database_url: str
) -> None:
    key = await make_key(database_url, "scoped-admin", ROLE_ADMIN, scope=DeviceScope(frozenset({"pi-1"})))
    async with _channel(query_server) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await access_pb2_grpc.AccessServiceStub(channel).CreateApiKey(
                access_pb2.CreateApiKeyRequest(api_key=access_pb2.ApiKey(name="escape", role=ROLE_ADMIN)),  # type: ignore[arg-type]
                metadata=bearer(key),
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as audit:
            await audit_pb2_grpc.AuditServiceStub(channel).ListAuditEvents(
                audit_pb2.ListAuditEventsRequest(), metadata=bearer(key)
            )
        assert audit.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_keys_are_shown_once_stored_hashed_and_listed_without_the_key(
    query_server: QueryServer, admin_key: str, writer: ReadingWriter
) -> None:
    async with _channel(query_server) as channel:
        access = access_pb2_grpc.AccessServiceStub(channel)
        created = await access.CreateApiKey(
            access_pb2.CreateApiKeyRequest(
                api_key=access_pb2.ApiKey(name="grafana", role=ROLE_VIEWER),
                ttl={"seconds": 3600},  # type: ignore[arg-type]
            ),
            metadata=bearer(admin_key),
        )
        listed = await access.ListApiKeys(access_pb2.ListApiKeysRequest(), metadata=bearer(admin_key))

    assert created.key.startswith("smak_") and len(created.key) > 40
    assert created.api_key.creator == "key:test-admin"
    assert created.api_key.expire_time.ToDatetime(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=59)
    stored = await writer.conn.fetchrow("SELECT * FROM api_keys WHERE name = 'grafana'")
    assert stored["key_hash"] == hash_token(created.key)
    assert created.key.encode() not in b"".join(str(v).encode() for v in stored.values())
    assert [k.name for k in listed.api_keys] == ["grafana", "test-admin"]
    assert created.key not in str(listed)


async def test_a_revoked_key_stops_within_the_bound_and_its_live_feed_ends(
    query_server: QueryServer, database_url: str, device: str, admin_key: str
) -> None:
    key = await make_key(database_url, "soon-revoked", ROLE_VIEWER)
    async with _channel(query_server) as channel:
        queries = query_pb2_grpc.QueryServiceStub(channel)
        feed = queries.WatchReadings(query_pb2.WatchReadingsRequest(device_id=device), metadata=bearer(key))
        await feed.initial_metadata()
        await queries.GetLatestReadings(
            query_pb2.GetLatestReadingsRequest(device_id=device), metadata=bearer(key)
        )

        revoked_at = time.monotonic()
        await access_pb2_grpc.AccessServiceStub(channel).RevokeApiKey(
            access_pb2.RevokeApiKeyRequest(name="soon-revoked"), metadata=bearer(admin_key)
        )
        bound = MAX_CREDENTIAL_DELAY.total_seconds()
        code = await asyncio.wait_for(feed.code(), bound + 2)
        feed_ended = time.monotonic() - revoked_at
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await queries.GetLatestReadings(
                query_pb2.GetLatestReadingsRequest(device_id=device), metadata=bearer(key)
            )

    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (await feed.details() or "")
    assert feed_ended <= bound + 1
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_changes_are_audited_with_who_what_and_outcome(
    query_server: QueryServer, database_url: str, device: str, admin_key: str
) -> None:
    operator = await make_key(database_url, "ops-alice", ROLE_OPERATOR)
    async with _channel(query_server) as channel:
        devices = device_pb2_grpc.DeviceServiceStub(channel)
        await devices.UpdateDevice(
            device_pb2.UpdateDeviceRequest(
                device=device_pb2.Device(device_id=device, description="moved"),
                update_mask={"paths": ["description"]},
            ),
            metadata=bearer(operator),
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await devices.DeleteDevice(
                device_pb2.DeleteDeviceRequest(device_id=device), metadata=bearer(operator)
            )
        with pytest.raises(grpc.aio.AioRpcError):
            await devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=device))
        await devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device), metadata=bearer(operator))
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        first = await audit.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(page_size=2), metadata=bearer(admin_key)
        )
        rest = await audit.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(page_size=2, page_token=first.next_page_token),
            metadata=bearer(admin_key),
        )
        mine = await audit.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(actor="key:ops-alice"), metadata=bearer(admin_key)
        )

    events = [
        (e.actor, e.method.split("/")[1], e.resource, e.outcome)
        for e in [*first.audit_events, *rest.audit_events]
    ]
    assert events == [  # newest first; the read is not audited
        ("anonymous", "DeleteDevice", f"devices/{device}", "UNAUTHENTICATED"),
        ("key:ops-alice", "DeleteDevice", f"devices/{device}", "PERMISSION_DENIED"),
        ("key:ops-alice", "UpdateDevice", f"devices/{device}", "OK"),
    ]
    assert not rest.next_page_token
    assert "admin role" in first.audit_events[1].message
    assert [e.outcome for e in mine.audit_events] == ["PERMISSION_DENIED", "OK"]


async def test_an_expired_key_is_refused_saying_so(
    query_server: QueryServer, database_url: str, device: str
) -> None:
    key = await make_key(
        database_url, "short-lived", ROLE_VIEWER, expire_time=datetime.now(UTC) + timedelta(seconds=1)
    )
    async with _channel(query_server) as channel:
        queries = query_pb2_grpc.QueryServiceStub(channel)
        request = query_pb2.GetLatestReadingsRequest(device_id=device)
        await queries.GetLatestReadings(request, metadata=bearer(key))
        await asyncio.sleep(1.2)
        with pytest.raises(grpc.aio.AioRpcError) as expired:
            await queries.GetLatestReadings(request, metadata=bearer(key))
    assert expired.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (expired.value.details() or "")


async def test_an_admin_re_registers_a_deleted_id_and_an_operator_cannot(
    query_server: QueryServer, database_url: str, device: str, admin_key: str, writer: ReadingWriter
) -> None:
    operator = await make_key(database_url, "ops", ROLE_OPERATOR)
    old_token = await writer.conn.fetchval("SELECT token_hash FROM devices WHERE device_id = $1", device)
    async with _channel(query_server) as channel:
        devices = device_pb2_grpc.DeviceServiceStub(channel)
        await devices.DeleteDevice(
            device_pb2.DeleteDeviceRequest(device_id=device), metadata=bearer(admin_key)
        )
        again = device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=device))
        with pytest.raises(grpc.aio.AioRpcError) as retired:
            await devices.CreateDevice(again, metadata=bearer(operator))
        again.reregister = True
        with pytest.raises(grpc.aio.AioRpcError) as operator_refused:
            await devices.CreateDevice(again, metadata=bearer(operator))
        created = await devices.CreateDevice(again, metadata=bearer(admin_key))

    assert retired.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "reregister" in (retired.value.details() or "")
    assert operator_refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert hash_token(created.token) != old_token
