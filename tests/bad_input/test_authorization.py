"""Malformed `authorization` metadata, over gRPC (directly and through Envoy),
REST and hand-written HTTP/2 headers: never a write, always UNAUTHENTICATED
(401) for credentials that identify no device, PERMISSION_DENIED (403) for
another device's, and the device's own token in any accepted spelling works."""

from __future__ import annotations

import grpc
import httpx
import psycopg
import pytest
from grpc import StatusCode
from sensormesh.v1 import ingest_pb2

from tests.bad_input.messages import OFFSET, UPLOAD, WRITE, imu_reading
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
def test_rest_credentials_that_name_no_device_are_401(case: str, http: httpx.Client, device: Device) -> None:
    headers = REST_MALFORMED[case]
    for response in (
        http.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=headers),
        http.post(f"/v1/devices/{device.device_id}/readings:write", headers=headers, json={"readings": [{}]}),
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
