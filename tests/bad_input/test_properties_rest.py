"""Property: every REST request through Envoy, valid or not, gets the answer the
contract gives it, as HTTP status and google.rpc.Status JSON, and valid ones do
what they ask.

Hypothesis draws query strings for ListReadings, GetLatestReadings,
WatchReadings and ListDevices, and JSON bodies for CreateDevice, UpdateDevice
and WriteReadings; rest_cases.py (and upload_cases.py for readings) says what
each part of a request is and which stage of the stack must refuse it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from google.protobuf import json_format
from grpc import StatusCode
from hypothesis import event, given
from sensormesh.v1 import ingest_pb2

from tests.bad_input.budget import examples
from tests.bad_input.device_body_cases import (
    ABSENT,
    UPDATABLE,
    BodyCase,
    UpdateCase,
    create_device_cases,
    update_device_cases,
)
from tests.bad_input.messages import WRITE, imu_reading, payload_reading
from tests.bad_input.rest_cases import (
    QueryCase,
    Verdict,
    latest_cases,
    list_devices_cases,
    list_readings_cases,
    verdict,
    watch_cases,
)
from tests.bad_input.stack import Device, Stack, committed, dead_letter_count, stored_count, unary
from tests.bad_input.upload_cases import WriteCase, expect_write, write_cases, write_request

pytestmark = pytest.mark.storage

HTTP_STATUS = {
    StatusCode.OK: 200,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.NOT_FOUND: 404,
}


@pytest.fixture
def other(stack: Stack) -> Device:
    return stack.register("other")


@pytest.fixture
def data_device(stack: Stack) -> Device:
    """A device with readings of two sensors over the last 50 minutes."""
    device = stack.register("data")
    readings = []
    for i in range(100):
        readings.append(imu_reading("mpu6050-0x68", offset_s=-3000 + 30 * i))
        environment = payload_reading("environment", sensor="bme280-0x76")
        environment.sample_time.CopyFrom(readings[-1].sample_time)
        readings.append(environment)
    request = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings)
    assert (
        unary(stack.ingest_target, WRITE, request.SerializeToString(), device.metadata).code is StatusCode.OK
    )
    return device


def _violations(body: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.BadRequest"):
            found.update({v["field"]: v["description"] for v in detail["fieldViolations"]})
    return found


def _reason(body: dict[str, Any]) -> str | None:
    return next((d["reason"] for d in body.get("details", []) if d["@type"].endswith("ErrorInfo")), None)


def _covers(wanted: str, name: str) -> bool:
    return name == wanted or name.startswith((wanted + "[", wanted + "."))


def check_verdict(
    response: httpx.Response, expected: Verdict, *, exact: bool = True, stream: bool = False
) -> dict[str, Any]:
    """The response has the expected status, and a 400 names every field it must
    (with `exact`, and no other). A 200 `stream` is not read."""
    event(f"HTTP {response.status_code}")
    if stream and response.status_code == 200 == expected.status:
        assert response.headers["content-type"] == "application/json", response.headers
        return {}
    response.read()
    assert response.status_code == expected.status, (response.status_code, response.text[:600], expected)
    assert response.headers["content-type"] == "application/json", response.headers
    body: dict[str, Any] = response.json() if response.content else {}
    if expected.status == 400 and expected.message_names:
        assert _reason(body) == "MALFORMED_REQUEST", body
        assert any(name in body["message"] for name in expected.message_names), (expected, body)
    elif expected.status == 400:
        named = set(_violations(body))
        for wanted in expected.fields:
            assert any(_covers(wanted, name) for name in named), (wanted, body)
        if exact:
            assert all(any(_covers(w, name) for w in expected.fields) for name in named), (named, expected)
    return body


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _columns_as_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A READINGS_VIEW_COLUMNS answer in the rows' shape, so that one check covers both layouts.
    A series' arrays are as long as its times (zip's strict); the other layout's are empty."""
    assert body["series"] == [], body["series"]
    rows = []
    for c in body["columns"]:
        times = [(EPOCH + timedelta(microseconds=int(t))).isoformat() for t in c["timeMicros"]]
        if c["counts"]:
            assert not c["values"], c
            fields = zip(times, c["mins"], c["maxes"], c["means"], c["counts"], strict=True)
            buckets = [
                {"startTime": t, "min": lo, "max": hi, "mean": m, "count": n} for t, lo, hi, m, n in fields
            ]
            rows.append({**c, "points": [], "buckets": buckets})
        else:
            assert not (c["mins"] or c["maxes"] or c["means"]), c
            points = [{"time": t, "value": v} for t, v in zip(times, c["values"], strict=True)]
            rows.append({**c, "points": points, "buckets": []})
    return rows


def _check_readings(case: QueryCase, body: dict[str, Any], asked_at: datetime, answered_at: datetime) -> None:
    parts = case.parts
    if parts["view"].value == "columns":
        body = {"series": _columns_as_rows(body)}
    else:
        assert body["columns"] == [], body["columns"]
    start, end = parts["start"].value, parts["end"].value
    upper = end or answered_at
    earliest = datetime.min.replace(tzinfo=UTC)  # the default start never precedes year 1
    lower = start or max(earliest, (end or asked_at) - min(timedelta(hours=1), (end or asked_at) - earliest))
    interval = parts["interval"].value
    sensors, quantities = parts["sensors"].value, parts["quantities"].value
    size = parts["page_size"].value or 10_000
    count = 0
    for series in body["series"]:
        assert not sensors or series["sensor"] in sensors, series["sensor"]
        assert not quantities or series["quantity"] in quantities, series["quantity"]
        if interval:
            assert not series["points"] and series["buckets"]
            for bucket in series["buckets"]:
                assert int(bucket["count"]) >= 1 and bucket["min"] <= bucket["mean"] <= bucket["max"]
        else:
            assert not series["buckets"]
            for point in series["points"]:
                assert lower <= _time(point["time"]) < upper, (point, lower, upper)
        count += len(series["points"]) + len(series["buckets"])
    assert count <= size


def _cross(case: QueryCase) -> list[str]:
    start, end = case.parts.get("start"), case.parts.get("end")
    if start and end and start.value and end.value and end.value <= start.value:
        return ["end_time"]
    return []


@examples(250)
@given(case=list_readings_cases())
def test_list_readings_query_strings(case: QueryCase, http: httpx.Client, data_device: Device) -> None:
    url = case.url("/v1/devices/{device}/readings", data_device.device_id, "nobody-home")
    expected = verdict(case, cross=_cross(case), token="token" in case.parts)
    asked_at = datetime.now(UTC)
    response = http.get(url)
    body = check_verdict(response, expected)
    if expected.status == 200:
        _check_readings(case, body, asked_at, datetime.now(UTC))


@examples(100)
@given(case=latest_cases())
def test_latest_readings_query_strings(case: QueryCase, http: httpx.Client, data_device: Device) -> None:
    url = case.url("/v1/devices/{device}/readings:latest", data_device.device_id, "nobody-home")
    expected = verdict(case)
    body = check_verdict(http.get(url), expected)
    if expected.status == 200:
        sensors, quantities = case.parts["sensors"].value, case.parts["quantities"].value
        wanted = {"mpu6050-0x68", "bme280-0x76"} & set(sensors or ["mpu6050-0x68", "bme280-0x76"])
        assert {v["sensor"] for v in body["values"]} <= wanted
        assert all(not quantities or v["quantity"] in quantities for v in body["values"])
        if not sensors and not quantities:
            assert len(body["values"]) == 9  # six IMU axes, temperature, humidity, pressure


@examples(60)
@given(case=watch_cases())
def test_watch_query_strings(case: QueryCase, http: httpx.Client, data_device: Device) -> None:
    url = case.url("/v1/devices/{device}/readings:watch", data_device.device_id, "nobody-home")
    expected = verdict(case)
    with http.stream("GET", url, timeout=10) as response:
        check_verdict(response, expected, stream=True)


@examples(100)
@given(case=list_devices_cases())
def test_list_devices_query_strings(case: QueryCase, http: httpx.Client, data_device: Device) -> None:
    expected = verdict(case, token="token" in case.parts)
    body = check_verdict(http.get(case.url("/v1/devices", "", "")), expected)
    if expected.status == 200:
        devices = body["devices"]
        assert [d["deviceId"] for d in devices] == sorted(d["deviceId"] for d in devices)
        assert len(devices) <= (case.parts["page_size"].value or 100)
        for name, key in (("status", "status"), ("type", "type")):
            wanted = case.parts[name].value
            assert not wanted or all(d[key] == wanted for d in devices), (wanted, devices)


def _canonical(name: str, value: Any) -> Any:
    """What a JSON value of a device field reads back as (absent, null and 0 are defaults)."""
    if name in ("type", "status"):
        names = (
            ("DEVICE_TYPE_GATEWAY", "DEVICE_TYPE_DIRECT")
            if name == "type"
            else ("DEVICE_STATUS_ACTIVE", "DEVICE_STATUS_DISABLED")
        )
        if isinstance(value, int) and not isinstance(value, bool):
            return names[value - 1] if value else names[0]
        return value.upper() if isinstance(value, str) else names[0]
    if name == "labels":
        return value or {}
    return value or ""


@examples(200)
@given(case=create_device_cases())
def test_create_device_bodies(case: BodyCase, http: httpx.Client) -> None:
    fresh = f"made-{uuid.uuid4().hex[:12]}"
    expected = case.verdict()
    body = check_verdict(http.post("/v1/devices", json=case.body(fresh)), expected, exact=False)
    if expected.status == 200:
        stored = http.get(f"/v1/devices/{fresh}").json()["device"]
        assert body["token"].startswith("smdt_") and stored["committedSequence"] == "0"
        for name, value in case.values.items():
            if name == "deviceId":
                continue
            want = _canonical(name, None if value.json is ABSENT else value.json)
            if name == "displayName" and not want:
                want = fresh
            assert stored[name] == want, (name, stored[name], want)


def _mask_violations(mask: tuple[str, ...] | None) -> frozenset[str]:
    if not mask or mask == ("*",):
        return frozenset()
    return frozenset(f"update_mask.paths[{i}]" for i, path in enumerate(mask) if path not in UPDATABLE)


def _updated(case: UpdateCase, before: dict[str, Any], device_id: str) -> dict[str, Any]:
    values = {name: (None if v.json is ABSENT else v.json) for name, v in case.body.values.items()}
    if case.mask is None:
        paths = [n for n, v in values.items() if v not in (None, "", 0, {})]
    elif case.mask == ("*",):
        paths = list(UPDATABLE)
    else:
        paths = list(case.mask)
    after = dict(before)
    for name in paths:
        after[name] = _canonical(name, values.get(name))
        if name == "displayName" and not after[name]:
            after[name] = device_id
    return after


@examples(100)
@given(case=update_device_cases())
def test_update_device_bodies_and_masks(case: UpdateCase, stack: Stack, http: httpx.Client) -> None:
    device = stack.register("patch", http)
    before = http.get(f"/v1/devices/{device.device_id}").json()["device"]
    expected = case.body.verdict()
    if expected.status == 200 and _mask_violations(case.mask):
        expected = Verdict(400, _mask_violations(case.mask))
    params = {"updateMask": ",".join(case.mask)} if case.mask else None

    response = http.patch(f"/v1/devices/{device.device_id}", params=params, json=case.body.body(""))

    check_verdict(response, expected, exact=False)
    after = http.get(f"/v1/devices/{device.device_id}").json()["device"]
    want = _updated(case, before, device.device_id) if expected.status == 200 else before
    for name in UPDATABLE:
        assert after[name] == want[name], (name, after[name], want[name])


def _rest_body(
    case: WriteCase, request: ingest_pb2.WriteReadingsRequest
) -> tuple[dict[str, Any], int | None]:
    """The JSON body of `request`, and the index of the first reading whose sample time JSON
    cannot express (the transcoder refuses the request then)."""
    body = json_format.MessageToDict(request)
    body.pop("deviceId", None)  # it is the path
    first_malformed = None
    for index, reading in enumerate(case.readings):
        if reading.malformed_time:
            stamp = reading.reading.sample_time
            body["readings"][index]["sampleTime"] = (
                "10000-01-01T00:00:00Z"
                if stamp.seconds > 253_402_300_799
                else "2030-01-01T00:00:00.1234567891Z"
            )
            first_malformed = index if first_malformed is None else first_malformed
    return body, first_malformed


def _without_malformed_times(case: WriteCase) -> ingest_pb2.WriteReadingsRequest:
    stripped = ingest_pb2.WriteReadingsRequest()
    for reading in case.readings:
        item = stripped.readings.add()
        item.CopyFrom(reading.reading)
        if reading.malformed_time:
            item.ClearField("sample_time")
    return stripped


@examples(120)
@given(case=write_cases())
def test_write_readings_bodies(
    case: WriteCase, device: Device, other: Device, anonymous: httpx.Client, db: psycopg.Connection
) -> None:
    """A device's call: it carries only the credential the case gives (none when "missing")."""
    since = datetime.now(UTC) - timedelta(days=3)  # valid readings are of the last two days
    mark, stored, letters = (
        committed(db, device.device_id),
        stored_count(db, device.device_id, since),
        dead_letter_count(db, device.device_id),
    )
    request = write_request(case, device.device_id, other.device_id, mark)
    path_device = request.device_id
    request.ClearField("readings")
    request.readings.extend(_without_malformed_times(case).readings)
    body, malformed = _rest_body(case, request)
    headers = {
        "own": device.headers,
        "missing": {},
        "garbage": {"authorization": "Bearer smdt_not-a-token"},
        "other device's": other.headers,
    }[case.auth]

    response = anonymous.post(f"/v1/devices/{path_device}/readings:write", headers=headers, json=body)

    grpc_expected = expect_write(case, mark)
    if malformed is not None:
        expected = Verdict(400, message_names=("sample_time",))
    elif grpc_expected.code is StatusCode.INVALID_ARGUMENT:
        refused = {
            f"readings[{i}].{r.expected_field.removeprefix('reading.')}"
            for i, r in enumerate(case.readings)
            if r.expected_field
        }
        named = grpc_expected.named or ""
        expected = Verdict(400, frozenset(refused if named.startswith("readings[") else {named}))
    else:
        expected = Verdict(HTTP_STATUS[grpc_expected.code])
    answer = check_verdict(response, expected)
    if expected.status == 200:
        assert (int(answer["acceptedCount"]), int(answer["rejectedCount"])) == (
            grpc_expected.accepted,
            len(grpc_expected.rejected),
        )
        assert [
            (int(r["sequence"]), r["index"], r["field"]) for r in answer["rejected"]
        ] == grpc_expected.rejected
        assert int(answer["committedSequence"]) == grpc_expected.mark
    else:
        grpc_expected.accepted, grpc_expected.rejected, grpc_expected.mark = 0, [], mark
    assert committed(db, device.device_id) == grpc_expected.mark
    assert stored_count(db, device.device_id, since) - stored == grpc_expected.accepted
    assert dead_letter_count(db, device.device_id) - letters == len(grpc_expected.rejected)
