"""FrameService over real gRPC, fed by the real ingest service: frames listed by capture time and
paged, fetched byte for byte by number or as the newest, and watched live (replay, cameras,
images inline, a deleted device ending the feed)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from pydantic import SecretStr
from sensormesh.v1 import device_pb2, device_pb2_grpc, frame_pb2, frame_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer, start
from ingest_service.settings import IngestSettings
from sensormesh_core.storage.registry import create_device
from tests.ingest_service.conftest import Device
from tests.support.frames import frame, image

pytestmark = pytest.mark.storage
START = datetime.now(UTC) - timedelta(minutes=10)


@pytest.fixture
async def ingest(database_url: str) -> AsyncIterator[IngestServer]:
    settings = IngestSettings(
        database_url=SecretStr(database_url),
        ingest_listen="127.0.0.1:0",
        ingest_notify_window=timedelta(milliseconds=5),
        pool_min_size=1,
        pool_max_size=4,
    )
    server = await start(settings)
    try:
        yield server
    finally:
        await server.stop(grace=5)


@pytest.fixture
async def camera_pi(db: asyncpg.Connection) -> Device:
    record, token = await create_device(db, "camera-pi")
    return Device(record.device_id, token)


@pytest.fixture
def frames(channel: grpc.aio.Channel) -> frame_pb2_grpc.FrameServiceStub:
    return frame_pb2_grpc.FrameServiceStub(channel)


async def upload(ingest: IngestServer, device: Device, *batches: list[frame_pb2.Frame]) -> int:
    """UploadFrames through the real ingest service; returns the committed frame sequence."""

    async def requests() -> AsyncIterator[ingest_pb2.UploadFramesRequest]:
        for chosen in batches:
            first, last = chosen[0].sequence, chosen[-1].sequence
            yield ingest_pb2.UploadFramesRequest(
                device_id=device.device_id, first_sequence=first, last_sequence=last, frames=chosen
            )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        response = await ingest_pb2_grpc.IngestServiceStub(channel).UploadFrames(
            requests(), metadata=device.metadata
        )
    return int(response.committed_sequence)


def two_cameras(first: int, last: int) -> list[frame_pb2.Frame]:
    """Frames first..last a second apart; odd ones from "door", even ones from "yard"."""
    return [
        frame(s, START + timedelta(seconds=s), camera="door" if s % 2 else "yard")
        for s in range(first, last + 1)
    ]


async def test_frames_are_listed_by_capture_time_and_paged_per_camera(
    ingest: IngestServer, camera_pi: Device, frames: frame_pb2_grpc.FrameServiceStub
) -> None:
    await upload(ingest, camera_pi, two_cameras(1, 10), two_cameras(11, 20))

    request = frame_pb2.ListFramesRequest(device_id="camera-pi", cameras=["door"], page_size=4)
    request.start_time.FromDatetime(START)
    seen: list[int] = []
    while True:
        page = await frames.ListFrames(request)
        seen += [f.sequence for f in page.frames]
        assert all(f.data == b"" and f.size_bytes > 0 and f.camera == "door" for f in page.frames)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token

    assert seen == list(range(1, 21, 2))
    everything = await frames.ListFrames(frame_pb2.ListFramesRequest(device_id="camera-pi"))
    assert [f.sequence for f in everything.frames] == list(range(1, 21))  # the last hour by default


async def test_a_frame_comes_back_byte_for_byte_by_number_and_as_the_newest(
    ingest: IngestServer, camera_pi: Device, frames: frame_pb2_grpc.FrameServiceStub
) -> None:
    await upload(ingest, camera_pi, two_cameras(1, 6))

    by_number = await frames.GetFrame(frame_pb2.GetFrameRequest(device_id="camera-pi", sequence=3))
    newest = await frames.GetFrame(frame_pb2.GetFrameRequest(device_id="camera-pi"))
    newest_door = await frames.GetFrame(frame_pb2.GetFrameRequest(device_id="camera-pi", camera="door"))

    assert by_number.image.data == image(text="3") and by_number.image.content_type == "image/jpeg"
    assert (by_number.frame.sequence, by_number.frame.camera, by_number.frame.width) == (3, "door", 64)
    assert newest.frame.sequence == 6 and newest.image.data == image(text="6")
    assert newest_door.frame.sequence == 5
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await frames.GetFrame(frame_pb2.GetFrameRequest(device_id="camera-pi", sequence=99))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await frames.GetFrame(frame_pb2.GetFrameRequest(device_id="camera-pi", camera="attic"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_device_shows_the_cameras_and_the_frame_mark(
    ingest: IngestServer, camera_pi: Device, devices: device_pb2_grpc.DeviceServiceStub
) -> None:
    await upload(ingest, camera_pi, two_cameras(1, 5))

    device = (await devices.GetDevice(device_pb2.GetDeviceRequest(device_id="camera-pi"))).device

    assert [(c.name, c.last_sequence) for c in device.cameras] == [("door", 5), ("yard", 4)]
    assert device.committed_frame_sequence == 5


async def _frames_of(feed: grpc.aio.UnaryStreamCall, count: int) -> list[frame_pb2.Frame]:
    got: list[frame_pb2.Frame] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            message = await feed.read()
            got += message.frames
    return got


async def test_a_live_view_replays_then_follows_new_frames_with_their_images(
    ingest: IngestServer, camera_pi: Device, frames: frame_pb2_grpc.FrameServiceStub
) -> None:
    await upload(ingest, camera_pi, two_cameras(1, 4))
    request = frame_pb2.WatchFramesRequest(device_id="camera-pi", include_data=True, cameras=["door"])
    request.start_time.FromDatetime(datetime.now(UTC) - timedelta(minutes=30))
    feed = frames.WatchFrames(request)
    await feed.initial_metadata()

    replayed = await _frames_of(feed, 2)
    await upload(ingest, camera_pi, two_cameras(5, 8))
    live = await _frames_of(feed, 2)
    feed.cancel()

    assert [f.sequence for f in replayed + live] == [1, 3, 5, 7]
    for got in replayed + live:
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(image(text=str(got.sequence))).digest()


async def test_a_deleted_device_ends_its_live_view_with_not_found(
    ingest: IngestServer,
    camera_pi: Device,
    frames: frame_pb2_grpc.FrameServiceStub,
    devices: device_pb2_grpc.DeviceServiceStub,
) -> None:
    feed = frames.WatchFrames(frame_pb2.WatchFramesRequest(device_id="camera-pi"))
    await feed.initial_metadata()
    await upload(ingest, camera_pi, two_cameras(1, 2))
    assert [f.sequence for f in await _frames_of(feed, 2)] == [1, 2]

    deleted = await devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id="camera-pi"))

    assert deleted.deleted_frame_count == 2
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _read_until_it_ends(feed)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def _read_until_it_ends(feed: grpc.aio.UnaryStreamCall) -> None:
    async with asyncio.timeout(10):
        while True:
            await feed.read()
