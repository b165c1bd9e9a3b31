"""The columnar history view and response compression, through the real Envoy:
`?view=READINGS_VIEW_COLUMNS` transcoded, JSON compressed for clients that accept
it (gzip, brotli; identity otherwise), and live feeds never compressed or held back."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import httpx
import pycurl
import pytest

from tests.envoy.conftest import Stack, register, write
from tests.envoy.json_stream import json_array_items
from tests.envoy.test_rest import environment, imu, iso

pytestmark = pytest.mark.storage

START = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = "READINGS_VIEW_COLUMNS"


def _micros(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(microseconds=1)


async def _history(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A device with 3 minutes of temperature and 20 IMU readings; its readings path and range."""
    device = await register(http, "cols")
    await write(
        http, device, [environment("bme280", START + timedelta(seconds=i), 20.1 + i % 7) for i in range(180)]
    )
    await write(http, device, [imu("mpu", START + timedelta(seconds=i), ax=i / 4) for i in range(20)])
    params = {"startTime": iso(START), "endTime": iso(START + timedelta(hours=1))}
    return f"/v1/devices/{device.device_id}/readings", params


async def test_rest_columns_carry_the_rows_values(http: httpx.AsyncClient) -> None:
    path, params = await _history(http)
    rows = (await http.get(path, params=params)).json()
    answer = await http.get(path, params={**params, "view": COLUMNS})
    assert answer.status_code == 200, answer.text
    columns = answer.json()
    assert columns["series"] == [] and len(columns["columns"]) == len(rows["series"]) == 7
    for row, col in zip(rows["series"], columns["columns"], strict=True):
        assert (col["sensor"], col["quantity"], col["unit"]) == (row["sensor"], row["quantity"], row["unit"])
        # int64 is a decimal string in proto3 JSON; values are numbers.
        assert all(isinstance(t, str) for t in col["timeMicros"])
        assert [int(t) for t in col["timeMicros"]] == [_micros(p["time"]) for p in row["points"]]
        assert col["values"] == [p["value"] for p in row["points"]]
        assert col["mins"] == col["maxes"] == col["means"] == col["counts"] == []

    minute = {**params, "interval": "60s"}
    row_buckets = (await http.get(path, params=minute)).json()["series"]
    col_buckets = (await http.get(path, params={**minute, "view": COLUMNS})).json()["columns"]
    for row, col in zip(row_buckets, col_buckets, strict=True):
        buckets = row["buckets"]
        assert [int(t) for t in col["timeMicros"]] == [_micros(b["startTime"]) for b in buckets]
        assert col["mins"] == [b["min"] for b in buckets]
        assert col["maxes"] == [b["max"] for b in buckets]
        assert col["means"] == [b["mean"] for b in buckets]
        assert col["counts"] == [int(b["count"]) for b in buckets]  # numbers, not strings
        assert col["values"] == []
    temperature = next(c for c in col_buckets if c["quantity"] == "temperature")
    assert temperature["counts"] == [60, 60, 60]


async def test_a_bad_view_names_the_field(http: httpx.AsyncClient) -> None:
    """Refused by Envoy's transcoder (a name, or a number, the enum does not have); gRPC callers
    get the contract's defined_only rule from the service (tests/query_service)."""
    path, params = await _history(http)
    for bad in ("READINGS_VIEW_SIDEWAYS", "7"):
        answer = await http.get(path, params={**params, "view": bad})
        assert answer.status_code == 400
        body = answer.json()
        assert body["code"] == 3 and body["message"].startswith(f'view: invalid value "{bad}"'), answer.text
        assert body["details"][0]["reason"] == "MALFORMED_REQUEST"


def _curl(url: str, key: str, accept: str | None, decode: bool = False) -> tuple[dict[str, str], bytes]:
    """GET `url` with libcurl, as sent (no decoding unless `decode`): headers and body bytes."""
    body, headers = BytesIO(), BytesIO()
    curl = pycurl.Curl()
    try:
        curl.setopt(pycurl.URL, url)
        sent = [f"authorization: Bearer {key}"] + ([f"accept-encoding: {accept}"] if accept else [])
        curl.setopt(pycurl.HTTPHEADER, sent)
        if decode:
            curl.setopt(pycurl.ACCEPT_ENCODING, accept or "")
        curl.setopt(pycurl.WRITEDATA, body)
        curl.setopt(pycurl.HEADERFUNCTION, headers.write)
        curl.perform()
        assert curl.getinfo(pycurl.RESPONSE_CODE) == 200
    finally:
        curl.close()
    lines = headers.getvalue().decode("latin-1").splitlines()[1:]
    found = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)
    }
    return found, body.getvalue()


async def test_rest_answers_are_compressed_when_the_client_accepts_it(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    path, params = await _history(http)
    url = str(httpx.URL(stack.url + path, params={**params, "view": COLUMNS}))

    plain_headers, plain = await asyncio.to_thread(_curl, url, stack.admin_key, None)
    assert "content-encoding" not in plain_headers
    expected = json.loads(plain)

    gzip_headers, gzipped = await asyncio.to_thread(_curl, url, stack.admin_key, "gzip")
    assert gzip_headers["content-encoding"] == "gzip"
    assert "accept-encoding" in gzip_headers["vary"].lower()
    assert json.loads(gzip.decompress(gzipped)) == expected
    assert len(gzipped) < len(plain) / 3

    br_headers, brotli = await asyncio.to_thread(_curl, url, stack.admin_key, "br")
    assert br_headers["content-encoding"] == "br"
    assert len(brotli) < len(plain) / 3
    _, decoded = await asyncio.to_thread(_curl, url, stack.admin_key, "br", True)  # libcurl decodes brotli
    assert json.loads(decoded) == expected

    # The client's preference decides; identity when it accepts neither.
    prefers_gzip, _ = await asyncio.to_thread(_curl, url, stack.admin_key, "br;q=0.5, gzip")
    assert prefers_gzip["content-encoding"] == "gzip"
    identity, _ = await asyncio.to_thread(_curl, url, stack.admin_key, "identity")
    assert "content-encoding" not in identity


async def test_live_feed_is_not_compressed_and_arrives_message_by_message(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    device = await register(http, "live-gz")
    now = datetime.now(UTC)
    headers = {"accept-encoding": "br, gzip"}
    async with http.stream(
        "GET",
        f"/v1/devices/{device.device_id}/readings:watch",
        params={"quantities": "temperature"},
        headers=headers,
    ) as response:
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        items = json_array_items(response)
        for i in range(3):
            sent = time.monotonic()
            await write(http, device, [environment("bme280", now + timedelta(seconds=i), 40.0 + i)])
            async with asyncio.timeout(10):
                item: dict[str, Any] = await anext(items)
            # One small message, delivered at once: nothing waits for a compressor's block to fill.
            assert time.monotonic() - sent < 2.0
            assert [r["environment"]["temperatureCelsius"] for r in item["readings"]] == [40.0 + i]
