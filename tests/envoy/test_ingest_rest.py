"""IngestService's REST face through the real Envoy binary and the real ingest
service: WriteReadings and GetUploadOffset, their answers, and the HTTP
status and JSON body of every refusal (Envoy forwards `Authorization`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.envoy.conftest import register
from tests.envoy.test_rest import environment, violations

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC).replace(microsecond=0)


def write_path(device_id: str) -> str:
    return f"/v1/devices/{device_id}/readings:write"


async def test_write_readings_and_read_the_offset_over_rest(http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-write")
    first = await http.post(
        write_path(device.device_id),
        json={"readings": [environment("bme280", NOW + timedelta(seconds=i), 20.0 + i) for i in range(3)]},
        headers=device.headers,
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "committedSequence": "3",
        "acceptedCount": "3",
        "duplicateCount": "0",
        "rejectedCount": "0",
        "rejected": [],
    }
    # With first_sequence, a retry of the same request is idempotent.
    body = {"firstSequence": "4", "readings": [environment("bme280", NOW + timedelta(seconds=3), 23.0)]}
    for attempt in range(2):
        retried = await http.post(write_path(device.device_id), json=body, headers=device.headers)
        assert retried.status_code == 200
        assert (retried.json()["acceptedCount"], retried.json()["duplicateCount"]) == (
            ("1", "0") if attempt == 0 else ("0", "1")
        )

    offset = await http.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=device.headers)
    assert offset.status_code == 200
    assert offset.json()["deviceId"] == device.device_id and offset.json()["committedSequence"] == "4"
    moved = datetime.fromisoformat(offset.json()["updateTime"].replace("Z", "+00:00"))
    assert abs((moved - datetime.now(UTC)).total_seconds()) < 60
    latest = await http.get(f"/v1/devices/{device.device_id}/readings:latest")
    assert [v["value"] for v in latest.json()["values"]] == [23.0]


async def test_a_refused_reading_is_reported_and_the_rest_stored(http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-partial")
    hot = environment("bme280", NOW, 900.0)  # above the contract's 200 °C
    response = await http.post(
        write_path(device.device_id),
        json={"readings": [environment("bme280", NOW - timedelta(seconds=1), 21.0), hot]},
        headers=device.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["acceptedCount"], body["rejectedCount"], body["committedSequence"]) == ("1", "1", "2")
    (rejected,) = body["rejected"]
    assert (rejected["sequence"], rejected.get("index", 0)) == ("2", 1)
    assert rejected["field"].endswith("temperature_celsius") and rejected["reason"]


async def test_bad_writes_are_400_with_field_violations(http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-bad")
    everything_refused = await http.post(
        write_path(device.device_id),
        json={"readings": [environment("bme280", NOW, 900.0), environment("bme280", NOW, -500.0)]},
        headers=device.headers,
    )
    assert everything_refused.status_code == 400, everything_refused.text
    assert everything_refused.json()["code"] == 3
    fields = violations(everything_refused.json())
    assert {
        "readings[0].environment.temperature_celsius",
        "readings[1].environment.temperature_celsius",
    } <= set(fields), fields

    empty = await http.post(write_path(device.device_id), json={"readings": []}, headers=device.headers)
    assert empty.status_code == 400 and "readings" in violations(empty.json())

    offset = await http.get(f"/v1/devices/{device.device_id}/uploadOffset", headers=device.headers)
    assert offset.json()["committedSequence"] == "0"  # nothing of a refused request moved the mark


async def test_device_credentials_map_to_401_and_403(http: httpx.AsyncClient) -> None:
    device = await register(http, "rest-auth")
    other = await register(http, "rest-other")
    reading = {"readings": [environment("bme280", NOW, 20.0)]}
    offset_path = f"/v1/devices/{device.device_id}/uploadOffset"

    # `http` sends the admin key by default; these requests must carry only what they name.
    async with httpx.AsyncClient(base_url=http.base_url, timeout=20) as anonymous:
        for headers in (
            {},
            {"authorization": "Basic dXNlcjpwYXNz"},
            {"authorization": "Bearer smdt_not-a-token"},
        ):
            assert (await anonymous.get(offset_path, headers=headers)).status_code == 401
            refused = await anonymous.post(write_path(device.device_id), json=reading, headers=headers)
            assert refused.status_code == 401 and refused.json()["code"] == 16

    # An operator's API key, even an admin's, is not a device's token.
    as_operator = await http.post(write_path(device.device_id), json=reading)
    assert as_operator.status_code == 403 and as_operator.json()["code"] == 7

    # A device's token acting as another device.
    foreign = await http.post(write_path(other.device_id), json=reading, headers=device.headers)
    assert foreign.status_code == 403 and foreign.json()["code"] == 7
    assert (
        await http.get(f"/v1/devices/{other.device_id}/uploadOffset", headers=device.headers)
    ).status_code == 403

    # A disabled device may not write, even with its own token.
    disabled = await http.patch(
        f"/v1/devices/{device.device_id}",
        params={"updateMask": "status"},
        json={"status": "DEVICE_STATUS_DISABLED"},
    )
    assert disabled.status_code == 200
    assert (
        await http.post(write_path(device.device_id), json=reading, headers=device.headers)
    ).status_code == 403
    assert (await http.get(offset_path, headers=device.headers)).json()["committedSequence"] == "0"
