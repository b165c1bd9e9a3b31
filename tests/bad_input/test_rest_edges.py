"""REST through the real Envoy at its edges: bodies and headers over the limits,
JSON that is malformed, deep, huge or of the wrong types, NaN and Infinity as
JSON strings, unknown fields and enum names, invalid UTF-8 in the path and the
query, and query parameters or body fields that contradict the URL path.

Every answer is JSON (a google.rpc.Status), with the HTTP status that says
what to do: 400 fix the request, 413/431 make it smaller, 401/403/404 as the
services decide; never 429 ("retry later") or 5xx for a request that is bad.
Operator calls carry the stack's admin key (`http` sends it), device calls
the device's own token."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from sensormesh.v1 import device_pb2, device_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import Bucket, EnvoyOptions, RateLimits, start_envoy
from tests.bad_input.messages import FLOAT_FIELDS
from tests.bad_input.stack import Device, Stack, committed, rest_violations, stored_count
from tests.support.ports import free_port

pytestmark = pytest.mark.storage

JSON_TYPE = "application/json"
REST_BODY_LIMIT = 4 * 1024 * 1024


def _iso(offset_s: float = -60) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reading(**payload: Any) -> dict[str, Any]:
    return {"sensor": "rest-probe", "sampleTime": _iso(), **(payload or {"imu": {"accelerationZMps2": 9.8}})}


def _status(response: httpx.Response, status: int) -> dict[str, Any]:
    """The google.rpc.Status body of an error answered with `status`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == JSON_TYPE, response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body["code"], int) and body["message"], body
    return body


def _reason(body: dict[str, Any]) -> str:
    return next(d["reason"] for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))


def test_a_body_over_the_limit_is_413_naming_the_limit(http: httpx.Client, device: Device) -> None:
    huge = {"deviceId": "too-big", "description": "x" * (REST_BODY_LIMIT + 1)}
    body = _status(http.post("/v1/devices", json=huge), 413)
    assert "4194304 bytes" in body["message"] and _reason(body) == "REQUEST_BODY_TOO_LARGE"
    readings = {"readings": [_reading()] * 50_000}  # about 4.8 MB
    body = _status(
        http.post(f"/v1/devices/{device.device_id}/readings:write", headers=device.headers, json=readings),
        413,
    )
    assert _reason(body) == "REQUEST_BODY_TOO_LARGE"


def test_a_body_just_under_the_limit_reaches_the_service(http: httpx.Client) -> None:
    """A body Envoy takes always fits the services' 8 MiB message limit: the service answers it.
    (Bodies between grpc's default 4 MiB and Envoy's former 16 MiB ended as 429 RESOURCE_EXHAUSTED.)"""
    big = {"deviceId": "nearly-too-big", "description": "x" * (REST_BODY_LIMIT - 100)}
    body = _status(http.post("/v1/devices", json=big), 400)
    assert "device.description" in rest_violations_of(body)


def rest_violations_of(body: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in body.get("details", []):
        if detail["@type"].endswith("google.rpc.BadRequest"):
            found.update({v["field"]: v["description"] for v in detail["fieldViolations"]})
    return found


def test_headers_over_the_limit_are_431_naming_the_limit(http: httpx.Client, device: Device) -> None:
    body = _status(http.get(f"/v1/devices/{device.device_id}", headers={"x-padding": "x" * 70_000}), 431)
    assert "60 KiB" in body["message"] and _reason(body) == "REQUEST_HEADERS_TOO_LARGE"
    token = {"authorization": "Bearer " + "x" * 70_000}
    _status(http.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=token), 431)


def test_a_long_query_string_reaches_the_service_and_is_refused_by_its_limit(
    http: httpx.Client, device: Device
) -> None:
    """A 30 KB query string passes Envoy (60 KiB) and used to exceed grpc's 16 KiB metadata limit (429)."""
    params = [("sensors", f"sensor-{i:05d}") for i in range(2_000)]
    body = _status(http.get(f"/v1/devices/{device.device_id}/readings", params=params), 400)
    assert "100" in rest_violations_of(body)["sensors"]
    body = _status(http.get(f"/v1/devices/{device.device_id}/readings:latest", params=params), 400)
    assert "sensors" in rest_violations_of(body)


MALFORMED_BODIES = {
    "not JSON": (b"{device", None),
    "a JSON array": (b"[1, 2]", None),
    "deeply nested arrays": (b"[" * 100_000 + b"]" * 100_000, "deep"),
    "deeply nested objects": (b'{"labels":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001, "deep"),
    "a number for a string": (b'{"deviceId": 5}', "device_id"),
    "an unknown enum name": (b'{"deviceId": "enum-name", "type": "DEVICE_TYPE_TOASTER"}', "type"),
    "not UTF-8": (b'{"deviceId": "utf8", "description": "\xff\xfe"}', "UTF-8"),
    "a truncated body": (b'{"deviceId": "trunc', None),
}


@pytest.mark.parametrize("case", MALFORMED_BODIES, ids=list(MALFORMED_BODIES))
def test_malformed_json_is_400_with_a_status_body(case: str, http: httpx.Client) -> None:
    content, named = MALFORMED_BODIES[case]
    body = _status(http.post("/v1/devices", content=content, headers={"content-type": JSON_TYPE}), 400)
    assert body["code"] == 3 and _reason(body) == "MALFORMED_REQUEST"
    if named:
        assert named in body["message"], body


def test_huge_json_of_many_items_is_answered_field_by_field(http: httpx.Client, device: Device) -> None:
    labels = {f"k{i}": "v" for i in range(100_000)}  # 1.4 MB of labels, 32 allowed
    body = _status(http.post("/v1/devices", json={"deviceId": "many-labels", "labels": labels}), 400)
    assert "device.labels" in rest_violations_of(body)
    readings = {"readings": [_reading()] * 10_001}
    body = _status(
        http.post(f"/v1/devices/{device.device_id}/readings:write", headers=device.headers, json=readings),
        400,
    )
    assert "at most 10000 readings" in rest_violations_of(body)["readings"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_nan_and_infinity_as_json_strings_are_refused_by_field(
    http: httpx.Client, device: Device, db: psycopg.Connection
) -> None:
    readings, expected = [_reading()], {}
    for payload, field in FLOAT_FIELDS:
        for value in ("NaN", "Infinity", "-Infinity"):
            values = {_camel(field): value}
            if payload == "measurement":
                values.update(name="current", unit="A")
            elif payload == "environment" and field != "temperature_celsius":
                values["temperatureCelsius"] = 20
            expected[len(readings)] = f"reading.{payload}.{field}"
            readings.append(_reading(**{payload: values}))

    response = http.post(
        f"/v1/devices/{device.device_id}/readings:write", headers=device.headers, json={"readings": readings}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["acceptedCount"], body["rejectedCount"]) == ("1", str(3 * len(FLOAT_FIELDS)))
    assert {r["index"]: r["field"] for r in body["rejected"]} == expected
    assert stored_count(db, device.device_id) == 1


def test_a_json_number_a_float_cannot_hold_is_400_naming_the_field(
    http: httpx.Client, device: Device
) -> None:
    reading = _reading(imu={"accelerationXMps2": 1e300})
    body = _status(
        http.post(
            f"/v1/devices/{device.device_id}/readings:write",
            headers=device.headers,
            json={"readings": [reading]},
        ),
        400,
    )
    assert "readings[0].imu.acceleration_x_mps2" in body["message"]


REST_TIMES = {
    "the epoch": ("1970-01-01T00:00:00Z", 400, "greater than 1970-01-01"),
    "year 1": ("0001-01-01T00:00:00Z", 400, "greater than 1970-01-01"),
    "year 9999": ("9999-12-31T23:59:59.999999999Z", 400, "ahead of the server's clock"),
    "year 10000": ("10000-01-01T00:00:00Z", 400, "readings[0].sample_time"),
    "ten digits of fraction": ("2030-01-01T00:00:00.1234567891Z", 400, "readings[0].sample_time"),
    "no zone": ("2030-01-01T00:00:00", 400, "readings[0].sample_time"),
    "a number": (1_700_000_000, 400, "readings[0].sample_time"),
}


@pytest.mark.parametrize("case", REST_TIMES, ids=list(REST_TIMES))
def test_sample_times_at_the_edges_over_rest(case: str, http: httpx.Client, device: Device) -> None:
    value, status, named = REST_TIMES[case]
    reading = {**_reading(), "sampleTime": value}
    response = http.post(
        f"/v1/devices/{device.device_id}/readings:write", headers=device.headers, json={"readings": [reading]}
    )
    body = _status(response, status)
    assert named in body["message"] + json.dumps(rest_violations_of(body)), body


def test_unknown_json_fields_are_ignored_and_unknown_payloads_refused(
    http: httpx.Client, device: Device, db: psycopg.Connection
) -> None:
    """Envoy's transcoder drops JSON fields the contract does not have (proto3 JSON's
    forward compatibility; it has no option to refuse them): a misspelt optional field
    is lost, a misspelt required one is named by the check it then fails."""
    readings = [
        {**_reading(), "colour": "red"},
        {"sensor": "rest-probe", "sampleTime": _iso(), "gps": {"lat": 1.0}},
        {"sensor": "rest-probe", "sampeTime": _iso(), "imu": {}},
    ]
    response = http.post(
        f"/v1/devices/{device.device_id}/readings:write",
        headers=device.headers,
        json={"readings": readings, "firmware": "1.2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["acceptedCount"] == "1"
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "reading.payload"),
        (2, "reading.sample_time"),
    ]
    assert stored_count(db, device.device_id) == 1


def test_enum_values_over_rest(http: httpx.Client) -> None:
    ok = http.post("/v1/devices", json={"deviceId": f"enum-{time.time_ns()}", "type": "device_type_direct"})
    assert ok.status_code == 200 and ok.json()["device"]["type"] == "DEVICE_TYPE_DIRECT"  # case-insensitive
    number = _status(http.post("/v1/devices", json={"deviceId": "enum-number", "type": 7}), 400)
    assert "device.type" in rest_violations_of(number)
    listed = _status(http.get("/v1/devices", params={"status": "DEVICE_STATUS_GONE"}), 400)
    assert "status" in listed["message"]


def test_invalid_utf8_in_the_path_and_the_query_is_400_naming_the_field(
    http: httpx.Client, device: Device
) -> None:
    body = _status(http.get("/v1/devices/%FF%FE"), 400)
    assert "device_id" in rest_violations_of(body)
    body = _status(http.get(f"/v1/devices/{device.device_id}/readings?sensors=ok&sensors=%C3%28"), 400)
    assert "sensors[1]" in rest_violations_of(body)
    body = _status(http.get(f"/v1/devices/{device.device_id}/readings?pageToken=%FF"), 400)
    assert "page_token" in rest_violations_of(body)


@pytest.mark.parametrize(
    "query",
    ["deviceId=", "device_id=", "%64evice%5Fid=", "device%2EdeviceId=", "sensors=a&deviceId="],
    ids=["camel", "snake", "percent-encoded", "nested", "after another"],
)
def test_a_query_parameter_may_not_override_the_device_in_the_path(
    query: str, stack: Stack, http: httpx.Client, device: Device
) -> None:
    victim = stack.register("victim")
    for method, path in (
        ("GET", f"/v1/devices/{device.device_id}"),
        ("GET", f"/v1/devices/{device.device_id}/readings"),
        ("PATCH", f"/v1/devices/{device.device_id}"),
        ("DELETE", f"/v1/devices/{device.device_id}"),
    ):
        body = {"description": "changed"} if method == "PATCH" else None
        response = http.request(method, f"{path}?{query}{victim.device_id}", json=body)
        answer = _status(response, 400)
        assert rest_violations_of(answer) == {
            "device_id": "device_id is given by the URL path; a query parameter may not override it"
        }
    assert http.get(f"/v1/devices/{victim.device_id}").json()["device"]["description"] == ""
    assert http.get(f"/v1/devices/{device.device_id}").status_code == 200


def test_a_body_field_may_not_contradict_the_path(
    stack: Stack, http: httpx.Client, device: Device, db: psycopg.Connection
) -> None:
    victim = stack.register("victim")
    patched = http.patch(
        f"/v1/devices/{device.device_id}", json={"device_id": victim.device_id, "description": "x"}
    )
    assert "conflicting" in _status(patched, 400)["message"]
    written = http.post(
        f"/v1/devices/{device.device_id}/readings:write",
        headers=device.headers,
        json={"device_id": victim.device_id, "readings": [_reading()]},
    )
    _status(written, 400)
    # camelCase spellings are not compared by the transcoder, but the path wins for them.
    same = http.patch(
        f"/v1/devices/{device.device_id}", json={"deviceId": victim.device_id, "description": "y"}
    )
    assert same.status_code == 200 and same.json()["device"]["deviceId"] == device.device_id
    assert http.get(f"/v1/devices/{victim.device_id}").json()["device"]["description"] == ""
    assert committed(db, victim.device_id) == 0


def test_unknown_paths_and_methods_are_404_with_a_status_body(http: httpx.Client, device: Device) -> None:
    assert _reason(_status(http.get("/v2/devices"), 404)) == "NO_ROUTE"
    assert "PUT" in _status(http.put(f"/v1/devices/{device.device_id}", json={}), 404)["message"]


def test_rate_limited_rest_calls_are_429_naming_the_limit_and_grpc_keeps_its_status(
    stack: Stack, tmp_path: Path
) -> None:
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", stack.ingest.port),
        query=("127.0.0.1", stack.query.port),
        rate_limits=RateLimits(anonymous=Bucket(per_second=2, burst=2)),
    )
    proxy = start_envoy(options, log_dir=tmp_path)
    try:
        # Anonymous on purpose: the anonymous bucket is the one made small here; the calls it
        # lets through are refused by the service (401), the others by Envoy (429).
        with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
            answers = [client.get("/v1/devices/nobody") for _ in range(6)]
        assert {a.status_code for a in answers} <= {401, 429}, [a.status_code for a in answers]
        limited = [a for a in answers if a.status_code == 429]
        assert len(limited) >= 3, [a.status_code for a in answers]
        body = _status(limited[0], 429)
        assert body["code"] == 8 and "(anonymous limit)" in body["message"]
        assert _reason(body) == "RATE_LIMITED"
        assert body["details"][0]["metadata"] == {"limit": "anonymous"}
        codes = []
        with grpc.insecure_channel(f"127.0.0.1:{options.listen_port}") as channel:
            stub = device_pb2_grpc.DeviceServiceStub(channel)
            for _ in range(6):
                try:
                    stub.GetDevice(device_pb2.GetDeviceRequest(device_id="nobody"), timeout=10)
                except grpc.RpcError as error:
                    codes.append((error.code(), error.details()))  # type: ignore[attr-defined]
        assert (grpc.StatusCode.RESOURCE_EXHAUSTED, "local_rate_limited") in codes, codes
    finally:
        proxy.stop()


def test_rest_errors_from_the_services_keep_their_field_violations(
    http: httpx.Client, device: Device
) -> None:
    """The local-reply rewriting leaves the services' own errors alone."""
    response = http.get(f"/v1/devices/{device.device_id}/readings", params={"pageSize": -1})
    assert rest_violations(response) == {
        "page_size": "must be greater than or equal to 0 and less than or equal to 100000"
    }
    assert _status(http.get("/v1/devices/nobody-here"), 404)["code"] == 5


def test_with_no_service_behind_envoy_rest_gets_503_json_and_grpc_unavailable(tmp_path: Path) -> None:
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", free_port()),  # nothing listens there
        query=("127.0.0.1", free_port()),
    )
    proxy = start_envoy(options, log_dir=tmp_path)
    try:
        with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
            body = _status(client.get("/v1/devices/pi-1"), 503)
        assert body["code"] == 14 and _reason(body) == "UPSTREAM_UNAVAILABLE"
        with (
            grpc.insecure_channel(f"127.0.0.1:{options.listen_port}") as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            device_pb2_grpc.DeviceServiceStub(channel).GetDevice(
                device_pb2.GetDeviceRequest(device_id="pi-1"), timeout=10
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "{" not in (caught.value.details() or "")  # type: ignore[attr-defined]  # not the REST JSON
    finally:
        proxy.stop()
