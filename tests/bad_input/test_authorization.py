"""Malformed `authorization` metadata, over gRPC (directly and through Envoy),
REST and hand-written HTTP/2 headers: never a write, always UNAUTHENTICATED
(401) for credentials that identify no device, PERMISSION_DENIED (403) for
another device's, and the device's own token in any accepted spelling works.

Operator RPCs likewise: without a valid operator key (none, or a malformed
one) UNAUTHENTICATED (401), with a device token PERMISSION_DENIED (403), and
nothing created or deleted. Anonymous CreateDevice and DeleteDevice used to
work (issue 12); they are refused now."""

from __future__ import annotations

import grpc
import httpx
import psycopg
import pytest
from grpc import StatusCode
from sensormesh.v1 import device_pb2, ingest_pb2

from tests.bad_input.messages import DEVICES, OFFSET, UPLOAD, WRITE, imu_reading
from tests.bad_input.raw_h2 import RawCall, grpc_frame
from tests.bad_input.stack import Device, Stack, client_stream, committed, unary

pytestmark = pytest.mark.storage


def _malformed(device: Device) -> dict[str, list[tuple[str, str | bytes]]]:
    return {
        "none": [],
        "empty": [("authorization", "")],
        "scheme only": [("authorization", "Bearer")],
        "scheme and spaces": [("authorization", "Bearer    ")],
        "basic": [("authorization", "Basic dXNlcjpwYXNz")],
        "token without scheme": [("authorization", device.token)],
        "other scheme": [("authorization", f"Token {device.token}")],
        "token with a suffix": [("authorization", f"Bearer {device.token}x")],
        "token cut short": [("authorization", f"Bearer {device.token[:-1]}")],
        "two tokens": [("authorization", f"Bearer {device.token} {device.token}")],
        "a wrong token first": [
            ("authorization", "Bearer smdt_wrong"),
            ("authorization", f"Bearer {device.token}"),
        ],
        "binary header": [("authorization-bin", f"Bearer {device.token}".encode())],
        "a 20 KB token": [("authorization", "Bearer " + "x" * 20_000)],
    }


ACCEPTED = ["Bearer {}", "bearer {}", "BEARER   {}  "]


def _write_request(device: Device) -> bytes:
    return ingest_pb2.WriteReadingsRequest(
        device_id=device.device_id, readings=[imu_reading()]
    ).SerializeToString()


@pytest.mark.parametrize("via", ["envoy", "direct"])
def test_credentials_that_name_no_device_are_unauthenticated(
    via: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    target = stack.envoy_target if via == "envoy" else stack.ingest_target
    batch = ingest_pb2.UploadReadingsRequest(device_id=device.device_id, first_sequence=1, last_sequence=1)
    batch.readings.add(sequence=1, reading=imu_reading())
    for case, metadata in _malformed(device).items():
        outcomes = [
            unary(target, WRITE, _write_request(device), metadata),
            unary(
                target,
                OFFSET,
                ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id).SerializeToString(),
                metadata,
            ),
            client_stream(target, UPLOAD, [batch.SerializeToString()], metadata),
        ]
        assert [o.code for o in outcomes] == [StatusCode.UNAUTHENTICATED] * 3, (
            case,
            [str(o) for o in outcomes],
        )
    assert committed(db, device.device_id) == 0


def test_the_token_in_any_accepted_spelling_works(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    for number, spelling in enumerate(ACCEPTED, start=1):
        outcome = unary(
            stack.envoy_target,
            WRITE,
            _write_request(device),
            [("authorization", spelling.format(device.token))],
        )
        assert outcome.code is StatusCode.OK, (spelling, outcome)
        assert committed(db, device.device_id) == number


def test_another_devices_token_is_permission_denied(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    other = stack.register("other")
    outcome = unary(stack.envoy_target, WRITE, _write_request(device), other.metadata)
    assert outcome.code is StatusCode.PERMISSION_DENIED and other.device_id in outcome.details
    assert committed(db, device.device_id) == committed(db, other.device_id) == 0


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Bearer smdt_\xc3\x28", b"\x00Bearer x", b"Bearer " + bytes(range(1, 32))],
    ids=["not UTF-8", "broken UTF-8", "NUL", "control characters"],
)
def test_header_bytes_no_grpc_library_sends(
    value: bytes, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    """Raw HTTP/2: grpc may refuse the header itself (a reset stream) or pass it on; either way
    no reading is written and the service stays up."""
    for port in (stack.ingest.port, stack.envoy.options.listen_port):
        call = RawCall(port, "/sensormesh.v1.IngestService/WriteReadings", [("authorization", value)])
        call.send(grpc_frame(_write_request(device)), end=True)
        outcome = call.outcome()
        call.abort()
        assert outcome in ("16", "reset", "closed"), outcome  # UNAUTHENTICATED, or refused by HTTP/2
    assert committed(db, device.device_id) == 0


REST_MALFORMED = {
    "none": {},
    "basic": {"authorization": "Basic dXNlcjpwYXNz"},
    "scheme only": {"authorization": "Bearer"},
    "unknown token": {"authorization": "Bearer smdt_nobody"},
}


@pytest.mark.parametrize("case", REST_MALFORMED, ids=list(REST_MALFORMED))
def test_rest_credentials_that_name_no_device_are_401(
    case: str, anonymous: httpx.Client, device: Device
) -> None:
    headers = REST_MALFORMED[case]
    for response in (
        anonymous.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=headers),
        anonymous.post(
            f"/v1/devices/{device.device_id}/readings:write", headers=headers, json={"readings": [{}]}
        ),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == 16


def test_rest_with_another_devices_token_is_403(stack: Stack, http: httpx.Client, device: Device) -> None:
    other = stack.register("other")
    response = http.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=other.headers)
    assert response.status_code == 403 and response.json()["code"] == 7


def test_grpc_refuses_credentials_of_a_disabled_device(
    stack: Stack, http: httpx.Client, device: Device, db: psycopg.Connection
) -> None:
    assert (
        http.patch(f"/v1/devices/{device.device_id}", json={"status": "DEVICE_STATUS_DISABLED"}).status_code
        == 200
    )
    with grpc.insecure_channel(stack.envoy_target):
        outcome = unary(stack.envoy_target, WRITE, _write_request(device), device.metadata)
    assert outcome.code is StatusCode.PERMISSION_DENIED, outcome
    assert committed(db, device.device_id) == 0


def _malformed_keys(key: str) -> dict[str, list[tuple[str, str | bytes]]]:
    """Operator credentials that identify no operator: missing, misspelt, or a real key spoiled."""
    return {
        "none": [],
        "empty": [("authorization", "")],
        "scheme only": [("authorization", "Bearer")],
        "basic": [("authorization", "Basic dXNlcjpwYXNz")],
        "key without scheme": [("authorization", key)],
        "other scheme": [("authorization", f"Token {key}")],
        "key with a suffix": [("authorization", f"Bearer {key}x")],
        "key cut short": [("authorization", f"Bearer {key[:-1]}")],
        "two keys": [("authorization", f"Bearer {key} {key}")],
        "a wrong key first": [("authorization", "Bearer smak_wrong"), ("authorization", f"Bearer {key}")],
        "binary header": [("authorization-bin", f"Bearer {key}".encode())],
        "a 20 KB key": [("authorization", "Bearer smak_" + "x" * 20_000)],
    }


def _operator_calls(device: Device, fresh_id: str) -> list[tuple[str, bytes]]:
    """A read (viewer), a create (operator) and a delete (admin) of DeviceService."""
    return [
        (DEVICES + "GetDevice", device_pb2.GetDeviceRequest(device_id=device.device_id).SerializeToString()),
        (
            DEVICES + "CreateDevice",
            device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=fresh_id)).SerializeToString(),
        ),
        (
            DEVICES + "DeleteDevice",
            device_pb2.DeleteDeviceRequest(device_id=device.device_id).SerializeToString(),
        ),
    ]


def _exists(http: httpx.Client, device_id: str) -> bool:
    status = http.get(f"/v1/devices/{device_id}").status_code
    assert status in (200, 404), status
    return status == 200


@pytest.mark.parametrize("via", ["envoy", "direct"])
def test_operator_rpcs_without_a_valid_operator_key_are_unauthenticated(
    via: str, stack: Stack, http: httpx.Client, device: Device
) -> None:
    target = stack.envoy_target if via == "envoy" else stack.query_target
    fresh_id = f"anon-{device.device_id}"
    for case, metadata in _malformed_keys(stack.admin_key).items():
        outcomes = [
            unary(target, method, payload, metadata) for method, payload in _operator_calls(device, fresh_id)
        ]
        assert [o.code for o in outcomes] == [StatusCode.UNAUTHENTICATED] * 3, (
            case,
            [str(o) for o in outcomes],
        )
    assert _exists(http, device.device_id) and not _exists(http, fresh_id)


@pytest.mark.parametrize("via", ["envoy", "direct"])
def test_a_device_token_on_operator_rpcs_is_permission_denied(
    via: str, stack: Stack, http: httpx.Client, device: Device
) -> None:
    """A device may not read, register or delete devices, itself included."""
    target = stack.envoy_target if via == "envoy" else stack.query_target
    fresh_id = f"bydevice-{device.device_id}"
    outcomes = [
        unary(target, method, payload, device.metadata)
        for method, payload in _operator_calls(device, fresh_id)
    ]
    assert [o.code for o in outcomes] == [StatusCode.PERMISSION_DENIED] * 3, [str(o) for o in outcomes]
    assert _exists(http, device.device_id) and not _exists(http, fresh_id)


REST_OPERATOR_REFUSALS = {
    "no credential": ({}, 401, 16),
    "an unknown key": ({"authorization": "Bearer smak_nobody"}, 401, 16),
    "a device token": (None, 403, 7),  # the device's own token
}


@pytest.mark.parametrize("case", REST_OPERATOR_REFUSALS, ids=list(REST_OPERATOR_REFUSALS))
def test_rest_create_and_delete_device_need_an_operator_key(
    case: str, anonymous: httpx.Client, http: httpx.Client, device: Device
) -> None:
    """Issue 12: anyone who could reach Envoy could register a device or delete one (and then
    register its id again, taking it over). Now a call without an operator key is refused."""
    given, status, code = REST_OPERATOR_REFUSALS[case]
    headers = device.headers if given is None else given
    fresh_id = f"rest-{device.device_id}"
    for response in (
        anonymous.post("/v1/devices", headers=headers, json={"deviceId": fresh_id}),
        anonymous.delete(f"/v1/devices/{device.device_id}", headers=headers),
        anonymous.get(f"/v1/devices/{device.device_id}", headers=headers),
    ):
        assert response.status_code == status, (response.request.method, response.text)
        assert response.json()["code"] == code
    assert _exists(http, device.device_id) and not _exists(http, fresh_id)
