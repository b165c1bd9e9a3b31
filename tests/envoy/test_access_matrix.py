"""The access matrix, generated from the contract: every RPC of every sensormesh
service x every kind of caller, over gRPC straight to the services and over
REST through the real Envoy, each answering the code its access rule implies.

Callers: no credential, the target device's own token, viewer, operator and
admin keys, a viewer key scoped to another device, a revoked and an expired
admin key. Each call acts on a device (and a key) made for it alone, so a call
that succeeds (a delete, a rotation) changes nothing another case sees.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from sensormesh.v1 import (
    access_pb2,
    alert_pb2,
    audit_pb2,
    command_delivery_pb2,
    command_pb2,
    device_pb2,
    frame_pb2,
    ingest_pb2,
    query_pb2,
)

from sensormesh_core.access.principal import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER
from sensormesh_core.access.rules import Rule, rule_of
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage import alert_rules, alerts, command_offers, commands
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key, revoke_key
from sensormesh_core.storage.registry import create_device
from tests.envoy.conftest import Stack
from tests.ingest_service.readings import batch, reading
from tests.support.frames import frame, image, store_frame

pytestmark = pytest.mark.storage

SERVICES = [
    f.services_by_name[name]
    for f, name in (
        (ingest_pb2.DESCRIPTOR, "IngestService"),
        (device_pb2.DESCRIPTOR, "DeviceService"),
        (query_pb2.DESCRIPTOR, "QueryService"),
        (frame_pb2.DESCRIPTOR, "FrameService"),
        (access_pb2.DESCRIPTOR, "AccessService"),
        (audit_pb2.DESCRIPTOR, "AuditService"),
        (command_pb2.DESCRIPTOR, "CommandService"),
        (command_delivery_pb2.DESCRIPTOR, "CommandDeliveryService"),
        (alert_pb2.DESCRIPTOR, "AlertService"),
    )
]
METHODS: dict[str, MethodDescriptor] = {f"{s.full_name}/{m.name}": m for s in SERVICES for m in s.methods}
CALLERS = ("none", "device", "viewer", "operator", "admin", "scoped viewer", "revoked", "expired")
# Every proto file of the contract that declares a service.
DESCRIPTOR_FILES = sorted(
    f.name
    for f in (
        ingest_pb2.DESCRIPTOR,
        device_pb2.DESCRIPTOR,
        query_pb2.DESCRIPTOR,
        frame_pb2.DESCRIPTOR,
        access_pb2.DESCRIPTOR,
        audit_pb2.DESCRIPTOR,
        command_pb2.DESCRIPTOR,
        command_delivery_pb2.DESCRIPTOR,
        alert_pb2.DESCRIPTOR,
    )
)
# The case's device has one frame (sequence 1) stored, so GetFrame has something to answer.
FRAME_TIME = datetime.now(UTC) - timedelta(minutes=5)
HTTP_STATUS = {"OK": 200, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404}


@dataclass(frozen=True)
class Target:
    """What one case acts on: a fresh device with its token, and a fresh key to revoke."""

    device_id: str
    token: str
    victim_key: str
    suffix: str
    command_id: int
    alert_id: int


# What each RPC is called with: a valid request naming the case's own device and key.
REQUESTS: dict[str, Callable[[Target], Message]] = {
    "sensormesh.v1.IngestService/UploadReadings": lambda t: batch(t.device_id, 1, 3),
    "sensormesh.v1.IngestService/GetUploadOffset": lambda t: ingest_pb2.GetUploadOffsetRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.IngestService/WriteReadings": lambda t: ingest_pb2.WriteReadingsRequest(
        device_id=t.device_id, readings=[reading(1)]
    ),
    "sensormesh.v1.IngestService/UploadFrames": lambda t: ingest_pb2.UploadFramesRequest(
        device_id=t.device_id, first_sequence=2, last_sequence=2, frames=[frame(2, FRAME_TIME)]
    ),
    "sensormesh.v1.IngestService/GetFrameUploadOffset": lambda t: ingest_pb2.GetFrameUploadOffsetRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.FrameService/ListFrames": lambda t: frame_pb2.ListFramesRequest(device_id=t.device_id),
    "sensormesh.v1.FrameService/GetFrame": lambda t: frame_pb2.GetFrameRequest(
        device_id=t.device_id, sequence=1
    ),
    "sensormesh.v1.FrameService/WatchFrames": lambda t: frame_pb2.WatchFramesRequest(device_id=t.device_id),
    "sensormesh.v1.DeviceService/CreateDevice": lambda t: device_pb2.CreateDeviceRequest(
        device=device_pb2.Device(device_id=f"new-{t.suffix}")
    ),
    "sensormesh.v1.DeviceService/GetDevice": lambda t: device_pb2.GetDeviceRequest(device_id=t.device_id),
    "sensormesh.v1.DeviceService/ListDevices": lambda t: device_pb2.ListDevicesRequest(),
    "sensormesh.v1.DeviceService/ListCommandSpecs": lambda t: device_pb2.ListCommandSpecsRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.DeviceService/UpdateDevice": lambda t: device_pb2.UpdateDeviceRequest(
        device=device_pb2.Device(device_id=t.device_id, description="changed"),
        update_mask={"paths": ["description"]},
    ),
    "sensormesh.v1.DeviceService/DeleteDevice": lambda t: device_pb2.DeleteDeviceRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.DeviceService/RotateDeviceToken": lambda t: device_pb2.RotateDeviceTokenRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.QueryService/ListReadings": lambda t: query_pb2.ListReadingsRequest(device_id=t.device_id),
    "sensormesh.v1.QueryService/GetLatestReadings": lambda t: query_pb2.GetLatestReadingsRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.QueryService/WatchReadings": lambda t: query_pb2.WatchReadingsRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.AccessService/CreateApiKey": lambda t: access_pb2.CreateApiKeyRequest(
        api_key=access_pb2.ApiKey(name=f"made-{t.suffix}", role=ROLE_VIEWER)  # type: ignore[arg-type]
    ),
    "sensormesh.v1.AccessService/ListApiKeys": lambda t: access_pb2.ListApiKeysRequest(),
    "sensormesh.v1.AccessService/RevokeApiKey": lambda t: access_pb2.RevokeApiKeyRequest(name=t.victim_key),
    "sensormesh.v1.AccessService/GetCaller": lambda t: access_pb2.GetCallerRequest(),
    "sensormesh.v1.AuditService/ListAuditEvents": lambda t: audit_pb2.ListAuditEventsRequest(),
    "sensormesh.v1.CommandService/SendCommand": lambda t: command_pb2.SendCommandRequest(
        device_id=t.device_id, name="ping"
    ),
    "sensormesh.v1.CommandService/GetCommand": lambda t: command_pb2.GetCommandRequest(
        device_id=t.device_id, command_id=t.command_id
    ),
    "sensormesh.v1.CommandService/ListCommands": lambda t: command_pb2.ListCommandsRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.CommandService/CancelCommand": lambda t: command_pb2.CancelCommandRequest(
        device_id=t.device_id, command_id=t.command_id
    ),
    "sensormesh.v1.CommandService/WatchCommands": lambda t: command_pb2.WatchCommandsRequest(
        device_id=t.device_id
    ),
    "sensormesh.v1.CommandDeliveryService/ConnectCommands": lambda t: (
        command_delivery_pb2.ConnectCommandsRequest(
            hello=command_delivery_pb2.CommandChannelHello(device_id=t.device_id)
        )
    ),
}


def _rule(rule_id: str) -> alert_pb2.AlertRule:
    rule = alert_pb2.AlertRule(rule_id=rule_id, severity=alert_pb2.ALERT_SEVERITY_MINOR)
    rule.threshold.quantity = "temperature"
    rule.threshold.above = 50
    return rule


REQUESTS.update(
    {
        "sensormesh.v1.AlertService/CreateAlertRule": lambda t: alert_pb2.CreateAlertRuleRequest(
            alert_rule=_rule(f"made-{t.suffix}")
        ),
        "sensormesh.v1.AlertService/GetAlertRule": lambda t: alert_pb2.GetAlertRuleRequest(
            rule_id=f"r-{t.suffix}"
        ),
        "sensormesh.v1.AlertService/ListAlertRules": lambda t: alert_pb2.ListAlertRulesRequest(),
        "sensormesh.v1.AlertService/UpdateAlertRule": lambda t: alert_pb2.UpdateAlertRuleRequest(
            alert_rule=alert_pb2.AlertRule(rule_id=f"r-{t.suffix}", display_name="renamed"),
            update_mask={"paths": ["display_name"]},
        ),
        "sensormesh.v1.AlertService/DeleteAlertRule": lambda t: alert_pb2.DeleteAlertRuleRequest(
            rule_id=f"r-{t.suffix}"
        ),
        "sensormesh.v1.AlertService/ListAlerts": lambda t: alert_pb2.ListAlertsRequest(),
        "sensormesh.v1.AlertService/GetAlert": lambda t: alert_pb2.GetAlertRequest(alert_id=t.alert_id),
        "sensormesh.v1.AlertService/AcknowledgeAlert": lambda t: alert_pb2.AcknowledgeAlertRequest(
            alert_id=t.alert_id
        ),
        "sensormesh.v1.AlertService/ClearAlert": lambda t: alert_pb2.ClearAlertRequest(alert_id=t.alert_id),
        "sensormesh.v1.AlertService/WatchAlerts": lambda t: alert_pb2.WatchAlertsRequest(),
    }
)
# A scoped key gets its part of these (or, from GetCaller, itself), not NOT_FOUND.
LISTS = {
    "sensormesh.v1.AccessService/GetCaller",
    "sensormesh.v1.DeviceService/ListDevices",
    "sensormesh.v1.AlertService/ListAlerts",
    "sensormesh.v1.AlertService/WatchAlerts",
}
# Fleet-wide resources: a scoped key is refused them (PERMISSION_DENIED), whatever its role.
UNSCOPED_ONLY = {
    f"sensormesh.v1.AlertService/{name}"
    for name in ("CreateAlertRule", "GetAlertRule", "ListAlertRules", "UpdateAlertRule", "DeleteAlertRule")
}
# Which process serves each service, for the gRPC half of the matrix.
SERVED_BY = {
    "sensormesh.v1.IngestService": "ingest",
    "sensormesh.v1.CommandDeliveryService": "ingest",
    "sensormesh.v1.CommandService": "control",
    "sensormesh.v1.AlertService": "control",
}


def test_the_matrix_covers_every_rpc_of_the_contract() -> None:
    """A new RPC fails here until it has a request above, so it cannot be left out of the matrix."""
    pool = descriptor_pool.Default()
    declared = set()
    for name in DESCRIPTOR_FILES:
        file = pool.FindFileByName(name)
        declared |= {f"{s.full_name}/{m.name}" for s in file.services_by_name.values() for m in s.methods}
    assert set(REQUESTS) == declared == set(METHODS)


def expected(rule: Rule, caller: str, method: str) -> str:
    """The status code name the access rule implies for this caller."""
    if caller == "none":
        return "UNAUTHENTICATED"
    if rule.device:
        return "OK" if caller == "device" else "PERMISSION_DENIED"
    if caller == "device":
        return "PERMISSION_DENIED"
    if caller in ("revoked", "expired"):
        return "UNAUTHENTICATED"
    role = {
        "viewer": ROLE_VIEWER,
        "operator": ROLE_OPERATOR,
        "admin": ROLE_ADMIN,
        "scoped viewer": ROLE_VIEWER,
    }
    if role[caller] < rule.role:
        return "PERMISSION_DENIED"
    if caller == "scoped viewer" and method in UNSCOPED_ONLY:
        return "PERMISSION_DENIED"
    if caller == "scoped viewer" and method not in LISTS:
        return "NOT_FOUND"  # the device exists, but not for this key
    return "OK"


@pytest.fixture(scope="module")
def credentials(stack: Stack) -> dict[str, str]:
    """One key per kind of operator caller, made on the stack's database."""

    async def make() -> dict[str, str]:
        conn = await asyncpg.connect(stack.database_url)
        try:
            keys = {}
            for caller, role in (("viewer", ROLE_VIEWER), ("operator", ROLE_OPERATOR), ("admin", ROLE_ADMIN)):
                _, keys[caller] = await create_key(conn, f"matrix-{caller}", role, creator=LOCAL_CREATOR)
            scope = DeviceScope(frozenset({"somewhere-else"}))
            _, keys["scoped viewer"] = await create_key(
                conn, "matrix-scoped", ROLE_VIEWER, creator=LOCAL_CREATOR, scope=scope
            )
            _, keys["revoked"] = await create_key(conn, "matrix-revoked", ROLE_ADMIN, creator=LOCAL_CREATOR)
            await revoke_key(conn, "matrix-revoked")
            past = datetime.now(UTC) - timedelta(minutes=1)
            _, keys["expired"] = await create_key(
                conn, "matrix-expired", ROLE_ADMIN, creator=LOCAL_CREATOR, expire_time=past
            )
            return keys
        finally:
            await conn.close()

    return asyncio.run(make())


@pytest.fixture
async def target(stack: Stack) -> Target:
    suffix = uuid.uuid4().hex[:10]
    device_id = f"m-{suffix}"
    conn = await asyncpg.connect(stack.database_url)
    try:
        _, token = await create_device(conn, device_id)
        await store_frame(conn, device_id, 1, FRAME_TIME, image())
        await create_key(conn, f"victim-{suffix}", ROLE_VIEWER, creator=LOCAL_CREATOR)
        # As if its agent had connected: it understands ping, and has one command queued.
        await command_offers.advertise(conn, device_id, [command_delivery_pb2.CommandSpec(name="ping")])
        await alert_rules.create(conn, _rule(f"r-{suffix}"), "key:matrix")
        alert, _ = await alerts.raise_alert(
            conn,
            alerts.Raise(
                alerts.SeriesKey(f"r-{suffix}", device_id, "bme280"), "temperature", 3,
                datetime.now(UTC), datetime.now(UTC), 51.0, 1, "51 above 50",
            ),
            alerts.Notice("r", ""),
            [],
        )  # fmt: skip
        queued, _ = await commands.insert(
            conn,
            commands.NewCommand(
                device_id,
                "ping",
                {},
                "key:matrix",
                "",
                datetime.now(UTC) + timedelta(hours=1),
                timedelta(minutes=1),
            ),
        )
    finally:
        await conn.close()
    return Target(device_id, token, f"victim-{suffix}", suffix, queued.command_id, alert.alert_id)


def _credential(caller: str, target: Target, keys: dict[str, str]) -> str | None:
    if caller == "none":
        return None
    return target.token if caller == "device" else keys[caller]


async def _grpc_code(port: int, method: str, request: Message, credential: str | None) -> tuple[str, str]:
    descriptor = METHODS[method]
    metadata = () if credential is None else (("authorization", f"Bearer {credential}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        path = f"/{method}"
        serialize, parse = (lambda m: m.SerializeToString()), (lambda b: b)
        try:
            if descriptor.client_streaming and descriptor.server_streaming:
                return await _bidi_code(channel, path, request, metadata)
            if descriptor.client_streaming:

                async def one() -> AsyncIterator[Message]:
                    yield request

                await channel.stream_unary(path, serialize, parse)(one(), metadata=metadata, timeout=10)
            elif descriptor.server_streaming:
                call = channel.unary_stream(path, serialize, parse)(request, metadata=metadata, timeout=10)
                try:
                    code = await asyncio.wait_for(call.code(), 1.0)
                except TimeoutError:  # still open: the feed was accepted
                    call.cancel()
                    return "OK", ""
                return code.name, await call.details() or ""
            else:
                await channel.unary_unary(path, serialize, parse)(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code().name, error.details() or ""
    return "OK", ""


async def _bidi_code(
    channel: grpc.aio.Channel, path: str, request: Message, metadata: tuple[tuple[str, str], ...]
) -> tuple[str, str]:
    """A bidirectional stream (the command channel): its first answer, or how it ended.

    A refusal comes at the call's start. The first message is written only once the call has
    not ended for a moment: grpcio's asyncio client reports a write after the server's status
    as INTERNAL instead of that status (grpc/grpc#36066)."""
    call: Any = None

    async def first_then_wait() -> AsyncIterator[Message]:
        await asyncio.sleep(0.5)
        if call.done():
            return
        yield request
        await asyncio.sleep(5)

    call = channel.stream_stream(path, lambda m: m.SerializeToString(), lambda b: b)(
        first_then_wait(), metadata=metadata, timeout=10
    )
    try:
        await asyncio.wait_for(call.read(), 3.0)
    except grpc.aio.AioRpcError:
        return (await call.code()).name, await call.details() or ""
    call.cancel()
    return "OK", ""  # it answered: the channel was accepted


def _rest_call(method: str, request: Message) -> tuple[str, str, dict[str, Any] | None]:
    """HTTP verb, path and JSON body, from the RPC's google.api.http rule."""
    rule = METHODS[method].GetOptions().Extensions[annotations_pb2.http]
    verb = next(v for v in ("get", "post", "patch", "delete", "put") if getattr(rule, v))
    template: str = getattr(rule, verb)
    message = json_format.MessageToDict(request, preserving_proto_field_name=True)

    def value(match: re.Match[str]) -> str:
        node: Any = message
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    path = re.sub(r"\{([^}]+)\}", value, template)
    if not rule.body:
        return verb.upper(), path, None
    body = message if rule.body == "*" else message.get(rule.body, {})
    return verb.upper(), path, body


async def _rest_status(
    stack: Stack, method: str, request: Message, credential: str | None
) -> tuple[int, str]:
    verb, path, body = _rest_call(method, request)
    headers = {} if credential is None else {"authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        if METHODS[method].server_streaming:
            async with client.stream(verb, path, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    return response.status_code, response.text
                return 200, ""
        response = await client.request(
            verb, path, headers=headers, content=None if body is None else json.dumps(body)
        )
        return response.status_code, response.text


def _case_ids() -> list[tuple[str, str]]:
    return [(m, c) for m in REQUESTS for c in CALLERS]


@pytest.mark.parametrize(
    ("method", "caller"), _case_ids(), ids=[f"{m.split('.')[-1]}-{c}" for m, c in _case_ids()]
)
async def test_grpc_answers_what_the_rule_says(
    stack: Stack, credentials: dict[str, str], target: Target, method: str, caller: str
) -> None:
    rule = rule_of(METHODS[method])
    served_by = SERVED_BY.get(method.split("/")[0], "query")
    port = {"ingest": stack.ingest_port, "query": stack.query_port, "control": stack.control_port}[served_by]
    code, details = await _grpc_code(
        port, method, REQUESTS[method](target), _credential(caller, target, credentials)
    )

    want = expected(rule, caller, method)
    assert code == want, details
    if want == "PERMISSION_DENIED" and method in UNSCOPED_ONLY and caller == "scoped viewer":
        # Says why: the role when it is too low, else that a scoped key cannot.
        assert rule.needs in details or "not scoped to some devices" in details
    elif want == "PERMISSION_DENIED" and not rule.device and caller != "device":
        assert rule.needs in details  # names the role the call needs
    if want == "UNAUTHENTICATED" and caller in ("revoked", "expired"):
        assert caller in details  # says which


@pytest.mark.parametrize(
    ("method", "caller"),
    [(m, c) for m, c in _case_ids() if METHODS[m].GetOptions().HasExtension(annotations_pb2.http)],
    ids=[
        f"{m.split('.')[-1]}-{c}"
        for m, c in _case_ids()
        if METHODS[m].GetOptions().HasExtension(annotations_pb2.http)
    ],
)
async def test_rest_through_envoy_answers_what_the_rule_says(
    stack: Stack, credentials: dict[str, str], target: Target, method: str, caller: str
) -> None:
    rule = rule_of(METHODS[method])
    status, body = await _rest_status(
        stack, method, REQUESTS[method](target), _credential(caller, target, credentials)
    )

    assert status == HTTP_STATUS[expected(rule, caller, method)], body


def test_no_credential_reaches_a_log_line(stack: Stack, credentials: dict[str, str]) -> None:
    """After the whole matrix (refusals included), no key and no token is in any log of the stack."""
    logs = {
        path.name: path.read_text(errors="replace") for path in stack.log_dir.rglob("*") if path.is_file()
    }
    assert {"ingest.log", "query.log", "control.log"} <= set(logs)
    assert sum(len(text) for text in logs.values()) > 10_000  # the matrix was logged
    for name, text in logs.items():
        for caller, key in credentials.items():
            assert key not in text, f"the {caller} key is in {name}"
        assert not re.search(r"sm(ak|dt)_[A-Za-z0-9_-]{20,}", text), f"a credential is in {name}"
