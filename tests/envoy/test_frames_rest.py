"""Camera frames through the real Envoy: a device uploads frames over gRPC through Envoy, and REST
clients list them as JSON, get each one as the image itself (byte-identical, `image/jpeg`),
the newest at `frames:latest`, and watch them live as a growing JSON array."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from sensormesh.v1 import frame_pb2, ingest_pb2, ingest_pb2_grpc

from tests.envoy.conftest import RestDevice, Stack, register
from tests.envoy.json_stream import json_array_items
from tests.support.frames import frame, image

pytestmark = pytest.mark.storage


async def upload(stack: Stack, device: RestDevice, frames: list[frame_pb2.Frame]) -> int:
    """UploadFrames over gRPC through Envoy with the device's token; the committed frame sequence."""

    async def one() -> AsyncIterator[ingest_pb2.UploadFramesRequest]:
        yield ingest_pb2.UploadFramesRequest(
            device_id=device.device_id,
            first_sequence=frames[0].sequence,
            last_sequence=frames[-1].sequence,
            frames=frames,
        )

    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        response = await ingest_pb2_grpc.IngestServiceStub(channel).UploadFrames(
            one(), metadata=device.metadata
        )
    return int(response.committed_sequence)


async def test_a_frame_over_rest_is_the_image_itself_byte_for_byte(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    device = await register(http, "cam")
    at = datetime.now(UTC) - timedelta(minutes=1)
    sent = [frame(s, at + timedelta(seconds=s), camera="door" if s < 3 else "yard") for s in (1, 2, 3)]
    assert await upload(stack, device, sent) == 3

    by_number = await http.get(f"/v1/devices/{device.device_id}/frames/2")
    newest = await http.get(f"/v1/devices/{device.device_id}/frames:latest")
    newest_door = await http.get(f"/v1/devices/{device.device_id}/frames:latest", params={"camera": "door"})

    assert by_number.status_code == 200, by_number.text
    assert by_number.headers["content-type"] == "image/jpeg"
    assert by_number.content == sent[1].data
    assert newest.content == sent[2].data
    assert newest_door.content == sent[1].data
    missing = await http.get(f"/v1/devices/{device.device_id}/frames/99")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "frame 99" in missing.json()["message"]
    offset = await http.get(f"/v1/devices/{device.device_id}/frameUploadOffset", headers=device.headers)
    assert offset.json()["committedSequence"] == "3"


async def test_frames_are_listed_as_json_without_their_images(stack: Stack, http: httpx.AsyncClient) -> None:
    device = await register(http, "cam-list")
    at = datetime.now(UTC) - timedelta(minutes=2)
    await upload(stack, device, [frame(s, at + timedelta(seconds=s)) for s in (1, 2, 3)])

    listed = await http.get(f"/v1/devices/{device.device_id}/frames", params={"pageSize": 2})

    body = listed.json()
    assert [f["sequence"] for f in body["frames"]] == ["1", "2"]
    first = body["frames"][0]
    assert (first["camera"], first["contentType"], first["width"], first["height"]) == (
        "cam",
        "image/jpeg",
        64,
        48,
    )
    assert first["data"] == "" and int(first["sizeBytes"]) == len(image(text="1"))
    rest = await http.get(
        f"/v1/devices/{device.device_id}/frames", params={"pageSize": 2, "pageToken": body["nextPageToken"]}
    )
    assert [f["sequence"] for f in rest.json()["frames"]] == ["3"]


async def test_a_live_view_over_rest_gets_each_new_frame_with_its_image(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    device = await register(http, "cam-live")
    at = datetime.now(UTC) - timedelta(seconds=30)
    async with http.stream(
        "GET", f"/v1/devices/{device.device_id}/frames:watch", params={"includeData": "true"}
    ) as response:
        assert response.status_code == 200
        items = json_array_items(response)
        received = []
        for sequence in (1, 2):
            await upload(stack, device, [frame(sequence, at + timedelta(seconds=sequence))])
            async with asyncio.timeout(10):
                item = await anext(items)
            received += item["frames"]
    assert [f["sequence"] for f in received] == ["1", "2"]
    assert [base64.b64decode(f["data"]) for f in received] == [image(text="1"), image(text="2")]
