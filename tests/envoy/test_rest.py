"""REST/JSON through the real Envoy binary: CRUD, history, latest values, live
feeds as a streamed JSON array, and errors as HTTP status + JSON status body.
Readings go in through the real ingest service behind the same Envoy
(WriteReadings over REST, UploadReadings over gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc, reading_pb2

from sensormesh_cli.bearer import aio_interceptors
from tests.envoy.conftest import RestDevice, Stack, register, unique_device, write
from tests.envoy.json_stream import json_array_items

pytestmark = pytest.mark.storage

START = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def environment(sensor: str, moment: datetime, temperature: float) -> dict[str, Any]:
    """A reading as REST clients write it (the contract's JSON mapping)."""
    return {
        "sensor": sensor,
        "sampleTime": moment.isoformat().replace("+00:00", "Z"),
        "environment": {"temperatureCelsius": temperature},
    }


def imu(sensor: str, moment: datetime, ax: float = 0.0) -> dict[str, Any]:
    return {
        "sensor": sensor,
        "sampleTime": moment.isoformat().replace("+00:00", "Z"),
        "imu": {"accelerationXMps2": ax, "accelerationZMps2": 9.80665},
    }


async def upload(stack: Stack, device: RestDevice, readings: list[dict[str, Any]], first: int) -> None:
    """One UploadReadings stream through Envoy (gRPC, as the agent sends), numbered from `first`."""
    request = ingest_pb2.UploadReadingsRequest(
        device_id=device.device_id, first_sequence=first, last_sequence=first + len(readings) - 1
    )
    for offset, reading in enumerate(readings):
        request.readings.add(
            sequence=first + offset, reading=json_format.ParseDict(reading, reading_pb2.Reading())
        )

    async def requests() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        yield request

    async with grpc.aio.insecure_channel(
        stack.grpc_target, interceptors=aio_interceptors(stack.admin_key)
    ) as channel:
        response = await ingest_pb2_grpc.IngestServiceStub(channel).UploadReadings(
            requests(), metadata=device.metadata, timeout=20
        )
    assert response.committed_sequence == first + len(readings) - 1


def violations(body: dict[str, object]) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in body.get("details", []):  # type: ignore[union-attr]
        if detail["@type"].endswith("google.rpc.BadRequest"):  # type: ignore[index]
            found.update({v["field"]: v["description"] for v in detail["fieldViolations"]})  # type: ignore[index]
    return found


async def test_device_crud_over_rest(http: httpx.AsyncClient) -> None:
    device = unique_device("rest")
    created = await http.post("/v1/devices", json={"deviceId": device, "labels": {"site": "north"}})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["token"].startswith("smdt_")
    assert body["device"]["status"] == "DEVICE_STATUS_ACTIVE" and body["device"]["committedSequence"] == "0"

    got = await http.get(f"/v1/devices/{device}")
    assert got.status_code == 200 and got.json()["device"]["labels"] == {"site": "north"}
    assert "token" not in got.json()

    patched = await http.patch(
        f"/v1/devices/{device}",
        params={"updateMask": "status,description"},
        json={"status": "DEVICE_STATUS_DISABLED", "description": "moved", "displayName": "ignored"},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["device"]["status"], patched.json()["device"]["description"]) == (
        "DEVICE_STATUS_DISABLED",
        "moved",
    )
    assert patched.json()["device"]["displayName"] == device

    listed = await http.get("/v1/devices", params={"status": "DEVICE_STATUS_DISABLED", "pageSize": 1000})
    assert device in [d["deviceId"] for d in listed.json()["devices"]]

    deleted = await http.delete(f"/v1/devices/{device}")
    assert deleted.status_code == 200 and deleted.json() == {
        "deletedReadingCount": "0",
        "deletedFrameCount": "0",
    }
    gone = await http.get(f"/v1/devices/{device}")
    assert gone.status_code == 404
    assert gone.json()["code"] == 5 and device in gone.json()["message"]


async def test_errors_map_to_http_status_with_field_violations(http: httpx.AsyncClient) -> None:
    bad = await http.post("/v1/devices", json={"deviceId": "Not_A_DNS_Label"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/json"
    assert "device.device_id" in violations(bad.json())

    device = unique_device("err")
    await http.post("/v1/devices", json={"deviceId": device})
    taken = await http.post("/v1/devices", json={"deviceId": device})
    assert taken.status_code == 409

    bad_range = await http.get(
        f"/v1/devices/{device}/readings",
        params={"startTime": iso(START), "endTime": iso(START - timedelta(minutes=1)), "interval": "0.5s"},
    )
    assert bad_range.status_code == 400
    assert {"end_time", "interval"} <= set(violations(bad_range.json()))
    bad_token = await http.get(f"/v1/devices/{device}/readings", params={"pageToken": "garbage"})
    assert bad_token.status_code == 400 and "page_token" in violations(bad_token.json())
    misspelt = await http.get(f"/v1/devices/{device}/readings", params={"quantity": "temperature"})
    assert misspelt.status_code == 400

    missing = await http.get("/v1/devices/pi-404/readings:latest")
    assert missing.status_code == 404


async def test_decimals_come_back_as_they_were_sent(http: httpx.AsyncClient) -> None:
    """`temperatureCelsius` is a 32-bit float: 21.1 is stored as 21.100000381469727, and every
    reader serves it as 21.1 again (raw points, bucket extremes and means, latest values)."""
    device = await register(http, "decimals")
    sent = [21.1, 0.1, 21.1, 0.3]
    await write(
        http, device, [environment("bme280", START + timedelta(seconds=i), v) for i, v in enumerate(sent)]
    )
    params = {
        "startTime": iso(START),
        "endTime": iso(START + timedelta(minutes=1)),
        "quantities": "temperature",
    }
    path = f"/v1/devices/{device.device_id}/readings"

    raw = (await http.get(path, params=params)).json()
    assert [p["value"] for p in raw["series"][0]["points"]] == sent
    (bucket,) = (await http.get(path, params={**params, "interval": "60s"})).json()["series"][0]["buckets"]
    assert (bucket["min"], bucket["max"], bucket["mean"]) == (0.1, 21.1, 10.65)
    latest = (await http.get(f"{path}:latest", params={"quantities": "temperature"})).json()
    assert [v["value"] for v in latest["values"]] == [0.3]


async def test_readings_read_back_over_rest_and_grpc_agree(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "hist")
    await write(
        http, device, [environment("bme280", START + timedelta(seconds=i), float(i)) for i in range(180)]
    )
    await write(http, device, [imu("mpu", START + timedelta(seconds=i), ax=float(i)) for i in range(10)])
    params = {
        "startTime": iso(START),
        "endTime": iso(START + timedelta(hours=1)),
        "quantities": "temperature",
    }

    raw = (await http.get(f"/v1/devices/{device.device_id}/readings", params=params)).json()
    (series,) = raw["series"]
    assert (series["sensor"], series["quantity"], series["unit"]) == ("bme280", "temperature", "Cel")
    assert [p["value"] for p in series["points"]] == [float(i) for i in range(180)]
    assert series["points"][1]["time"] == iso(START + timedelta(seconds=1))

    readings_path = f"/v1/devices/{device.device_id}/readings"
    down = (await http.get(readings_path, params={**params, "interval": "60s"})).json()
    assert [(b["count"], b["min"], b["max"], b["mean"]) for b in down["series"][0]["buckets"]] == [
        ("60", 0, 59, 29.5),
        ("60", 60, 119, 89.5),
        ("60", 120, 179, 149.5),
    ]

    latest = (await http.get(f"{readings_path}:latest", params={"sensors": "bme280"})).json()
    assert [(v["quantity"], v["value"]) for v in latest["values"]] == [("temperature", 179)]

    async with grpc.aio.insecure_channel(
        stack.grpc_target, interceptors=aio_interceptors(stack.admin_key)
    ) as channel:
        through_envoy = await query_pb2_grpc.QueryServiceStub(channel).ListReadings(
            query_pb2.ListReadingsRequest(
                device_id=device.device_id,
                quantities=["temperature"],
                interval={"seconds": 60},
                start_time={"seconds": int(START.timestamp())},
                end_time={"seconds": int(START.timestamp()) + 3600},
            )
        )
    assert [(b.count, b.mean) for b in through_envoy.series[0].buckets] == [
        (60, 29.5),
        (60, 89.5),
        (60, 149.5),
    ]


async def test_live_feed_over_rest_is_a_streamed_json_array(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "live")
    now = datetime.now(UTC)
    received: list[float] = []
    async with http.stream(
        "GET", f"/v1/devices/{device.device_id}/readings:watch", params={"quantities": "temperature"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        items = json_array_items(response)

        # Headers arrive once the feed is subscribed; then every commit reaches it,
        # whether it came in over REST or on an upload stream.
        for i in range(3):
            await write(http, device, [environment("bme280", now + timedelta(seconds=i), 30.0 + i)])
            await write(http, device, [imu("mpu", now)])  # filtered out
            async with asyncio.timeout(10):
                item = await anext(items)
            received += [r["environment"]["temperatureCelsius"] for r in item["readings"]]
        await upload(stack, device, [environment("bme280", now + timedelta(seconds=3), 33.0)], first=7)
        async with asyncio.timeout(10):
            item = await anext(items)
        received += [r["environment"]["temperatureCelsius"] for r in item["readings"]]
    assert received == [30.0, 31.0, 32.0, 33.0]


async def test_live_feed_over_grpc_through_envoy(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "grpc")
    async with grpc.aio.insecure_channel(
        stack.grpc_target, interceptors=aio_interceptors(stack.admin_key)
    ) as channel:
        stream = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
            query_pb2.WatchReadingsRequest(device_id=device.device_id)
        )
        async with asyncio.timeout(10):
            await stream.initial_metadata()
        await upload(stack, device, [environment("bme280", datetime.now(UTC), 12.5)], first=1)
        async with asyncio.timeout(10):
            message = await stream.read()
        assert [r.environment.temperature_celsius for r in message.readings] == [12.5]
        stream.cancel()


async def test_grpc_web_on_the_same_listener(http: httpx.AsyncClient) -> None:
    device = await register(http, "web")
    await write(http, device, [environment("bme280", datetime.now(UTC), 18.0)])
    message = query_pb2.GetLatestReadingsRequest(device_id=device.device_id).SerializeToString()
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    response = await http.post(
        "/sensormesh.v1.QueryService/GetLatestReadings",
        content=frame,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200
    body = response.content
    assert body[0] == 0
    length = int.from_bytes(body[1:5], "big")
    reply = query_pb2.GetLatestReadingsResponse.FromString(body[5 : 5 + length])
    assert [(v.quantity, v.value) for v in reply.values] == [("temperature", 18.0)]
    trailer = body[5 + length :]
    assert trailer[0] == 0x80 and b"grpc-status:0" in trailer.replace(b" ", b"")


async def test_access_log_is_json_per_request(stack: Stack, http: httpx.AsyncClient) -> None:
    import json

    await http.get("/v1/devices/pi-404")
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        entries = [
            json.loads(line) for line in stack.envoy.log_tail(200_000).splitlines() if line.startswith("{")
        ]
        hits = [e for e in entries if e["path"] == "/v1/devices/pi-404"]
        if hits or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    (entry,) = hits
    assert entry["grpc_method"] == "/sensormesh.v1.DeviceService/GetDevice"
    assert entry["status"] == 404 and entry["upstream"] == "query"
    assert entry["method"] == "GET"
