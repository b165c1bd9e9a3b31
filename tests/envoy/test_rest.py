"""REST/JSON through the real Envoy binary: CRUD, history, latest values, live
feeds as a streamed JSON array, and errors as HTTP status + JSON status body."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from sensormesh.v1 import query_pb2, query_pb2_grpc

from tests.envoy.conftest import Stack, unique_device
from tests.envoy.fake_ingest import DEVICE, TOKEN
from tests.envoy.json_stream import json_array_items
from tests.support.reading_writer import ReadingWriter, environment, imu

pytestmark = pytest.mark.storage

START = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    assert deleted.status_code == 200 and deleted.json() == {"deletedReadingCount": "0"}
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


async def test_device_credentials_map_to_401_and_403(http: httpx.AsyncClient) -> None:
    """The ingest route: Envoy forwards Authorization and maps the codes."""
    path = f"/v1/devices/{DEVICE}/uploadOffset"
    assert (await http.get(path)).status_code == 401
    other = await http.get("/v1/devices/pi-other/uploadOffset", headers={"authorization": f"Bearer {TOKEN}"})
    assert other.status_code == 403 and other.json()["code"] == 7
    ok = await http.get(path, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["committedSequence"] == "41"


async def test_readings_read_back_over_rest_and_grpc_agree(
    stack: Stack, http: httpx.AsyncClient, writer: ReadingWriter
) -> None:
    device = unique_device("hist")
    await http.post("/v1/devices", json={"deviceId": device})
    await writer.write(
        device, [environment("bme280", START + timedelta(seconds=i), float(i)) for i in range(180)]
    )
    await writer.write(device, [imu("mpu", START + timedelta(seconds=i), ax=float(i)) for i in range(10)])
    params = {
        "startTime": iso(START),
        "endTime": iso(START + timedelta(hours=1)),
        "quantities": "temperature",
    }

    raw = (await http.get(f"/v1/devices/{device}/readings", params=params)).json()
    (series,) = raw["series"]
    assert (series["sensor"], series["quantity"], series["unit"]) == ("bme280", "temperature", "Cel")
    assert [p["value"] for p in series["points"]] == [float(i) for i in range(180)]
    assert series["points"][1]["time"] == iso(START + timedelta(seconds=1))

    down = (await http.get(f"/v1/devices/{device}/readings", params={**params, "interval": "60s"})).json()
    assert [(b["count"], b["min"], b["max"], b["mean"]) for b in down["series"][0]["buckets"]] == [
        ("60", 0, 59, 29.5),
        ("60", 60, 119, 89.5),
        ("60", 120, 179, 149.5),
    ]

    latest = (await http.get(f"/v1/devices/{device}/readings:latest", params={"sensors": "bme280"})).json()
    assert [(v["quantity"], v["value"]) for v in latest["values"]] == [("temperature", 179)]

    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        through_envoy = await query_pb2_grpc.QueryServiceStub(channel).ListReadings(
            query_pb2.ListReadingsRequest(
                device_id=device,
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


async def test_live_feed_over_rest_is_a_streamed_json_array(
    http: httpx.AsyncClient, writer: ReadingWriter
) -> None:
    device = unique_device("live")
    await http.post("/v1/devices", json={"deviceId": device})
    now = datetime.now(UTC)
    received: list[float] = []
    async with http.stream(
        "GET", f"/v1/devices/{device}/readings:watch", params={"quantities": "temperature"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        items = json_array_items(response)

        # Headers arrive once the feed is subscribed; then every commit reaches it.
        for i in range(3):
            await writer.write(device, [environment("bme280", now + timedelta(seconds=i), 30.0 + i)])
            await writer.write(device, [imu("mpu", now)])  # filtered out
            async with asyncio.timeout(10):
                item = await anext(items)
            received += [r["environment"]["temperatureCelsius"] for r in item["readings"]]
    assert received == [30.0, 31.0, 32.0]


async def test_live_feed_over_grpc_through_envoy(
    stack: Stack, http: httpx.AsyncClient, writer: ReadingWriter
) -> None:
    device = unique_device("grpc")
    await http.post("/v1/devices", json={"deviceId": device})
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stream = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
            query_pb2.WatchReadingsRequest(device_id=device)
        )
        async with asyncio.timeout(10):
            await stream.initial_metadata()
        await writer.write(device, [environment("bme280", datetime.now(UTC), 12.5)])
        async with asyncio.timeout(10):
            message = await stream.read()
        assert [r.environment.temperature_celsius for r in message.readings] == [12.5]
        stream.cancel()


async def test_grpc_web_on_the_same_listener(http: httpx.AsyncClient, writer: ReadingWriter) -> None:
    device = unique_device("web")
    await http.post("/v1/devices", json={"deviceId": device})
    await writer.write(device, [environment("bme280", datetime.now(UTC), 18.0)])
    message = query_pb2.GetLatestReadingsRequest(device_id=device).SerializeToString()
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
