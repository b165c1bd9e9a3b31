"""UploadFrames through real gRPC and PostgreSQL: frames and images stored exactly once on their
own mark, bad frames refused alone with the field named, the rest of their batch kept, and the
frame rate paced rather than refused."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from sensormesh.v1 import frame_pb2, ingest_pb2, ingest_pb2_grpc

from ingest_service.settings import IngestSettings
from tests.ingest_service.conftest import Device, details, violations
from tests.ingest_service.readings import batch as reading_batch
from tests.ingest_service.readings import stream
from tests.support.frames import frame, image

pytestmark = pytest.mark.storage
NOW = datetime.now(UTC) - timedelta(minutes=5)


def frames_batch(
    device_id: str, first: int, last: int, frames: Iterable[frame_pb2.Frame] | None = None
) -> ingest_pb2.UploadFramesRequest:
    """Frames first..last, a second apart, unless `frames` are given."""
    chosen = (
        list(frames)
        if frames is not None
        else [frame(s, NOW + timedelta(seconds=s)) for s in range(first, last + 1)]
    )
    return ingest_pb2.UploadFramesRequest(
        device_id=device_id, first_sequence=first, last_sequence=last, frames=chosen
    )


async def frames_stream(
    *requests: ingest_pb2.UploadFramesRequest,
) -> AsyncIterator[ingest_pb2.UploadFramesRequest]:
    for request in requests:
        yield request


async def stored(db: asyncpg.Connection, device_id: str) -> dict[int, str]:
    """sequence -> SHA-256 of the stored image, for every frame of the device."""
    rows = await db.fetch(
        "SELECT f.sequence, b.data FROM frames f JOIN frame_blobs b "
        "ON b.device_id = f.device_id AND b.sequence = f.sequence AND b.time = f.time "
        "WHERE f.device_id = $1 ORDER BY f.sequence",
        device_id,
    )
    return {r["sequence"]: hashlib.sha256(r["data"]).hexdigest() for r in rows}


def digests(first: int, last: int) -> dict[int, str]:
    return {s: hashlib.sha256(image(text=str(s))).hexdigest() for s in range(first, last + 1)}


async def test_frames_are_stored_with_their_images_and_the_frame_mark_moves_alone(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    await stub.UploadReadings(stream([reading_batch(device.device_id, 1, 50)]), metadata=device.metadata)

    response = await stub.UploadFrames(
        frames_stream(frames_batch(device.device_id, 1, 4), frames_batch(device.device_id, 5, 9)),
        metadata=device.metadata,
    )

    assert (response.committed_sequence, response.accepted_count, response.duplicate_count) == (9, 9, 0)
    assert await stored(db, device.device_id) == digests(1, 9)
    offset = await stub.GetFrameUploadOffset(
        ingest_pb2.GetFrameUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert offset.committed_sequence == 9 and offset.update_time.seconds > 0
    readings = await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert readings.committed_sequence == 50  # the readings' mark is the readings' own
    camera = await db.fetchrow(
        "SELECT name, last_sequence FROM cameras WHERE device_id = $1", device.device_id
    )
    assert tuple(camera) == ("cam", 9)


async def test_a_device_without_frames_is_at_frame_sequence_zero(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    offset = await stub.GetFrameUploadOffset(
        ingest_pb2.GetFrameUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert offset.committed_sequence == 0 and not offset.HasField("update_time")


async def test_replayed_and_overlapping_frames_are_acknowledged_and_stored_once(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    await stub.UploadFrames(frames_stream(frames_batch(device.device_id, 1, 6)), metadata=device.metadata)

    response = await stub.UploadFrames(
        frames_stream(frames_batch(device.device_id, 1, 6), frames_batch(device.device_id, 4, 10)),
        metadata=device.metadata,
    )

    assert (response.committed_sequence, response.accepted_count, response.duplicate_count) == (10, 4, 9)
    assert await stored(db, device.device_id) == digests(1, 10)


async def test_bad_frames_are_refused_by_field_and_the_rest_of_their_batch_is_stored(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    at = NOW
    not_an_image = frame(2, at, data=b"<html>502 Bad Gateway</html>")
    text = frame(3, at)
    text.content_type = "text/plain"
    truncated = frame(4, at, data=image(text="4")[:-200])
    wrong_size = frame(5, at)
    wrong_size.width = 640
    as_png = frame(6, at, data=image(fmt="PNG"))
    too_old = frame(7, datetime.now(UTC) - timedelta(days=8))
    request = frames_batch(
        device.device_id,
        1,
        8,
        [frame(1, at), not_an_image, text, truncated, wrong_size, as_png, too_old, frame(8, at)],
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UploadFrames(frames_stream(request), metadata=device.metadata)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(raised.value)
    assert set(found) == {
        "frames[1].data",
        "frames[2].content_type",
        "frames[3].data",
        "frames[4].width",
        "frames[5].data",
        "frames[6].capture_time",
    }
    assert "not a image/jpeg image" in found["frames[1].data"]
    assert "truncated" in found["frames[3].data"]
    assert "640, but the image is 64" in found["frames[4].width"]
    assert "retention" in found["frames[6].capture_time"]
    assert details(raised.value)["ErrorInfo"].metadata["committed_sequence"] == "8"  # type: ignore[attr-defined]
    assert set(await stored(db, device.device_id)) == {1, 8}
    offset = await stub.GetFrameUploadOffset(
        ingest_pb2.GetFrameUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert offset.committed_sequence == 8  # the device resumes after the refused frames


async def test_a_frame_over_the_service_limit_is_refused_naming_its_data(
    ingest_settings: IngestSettings, stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    big = frame(1, NOW, data=image(640, 480, text="big"))
    big.width, big.height = 640, 480
    assert len(big.data) > ingest_settings.ingest_max_frame_bytes

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UploadFrames(
            frames_stream(frames_batch(device.device_id, 1, 1, [big])), metadata=device.metadata
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 4096 bytes" in violations(raised.value)["frames[0].data"]


@pytest.fixture
def ingest_settings(ingest_settings: IngestSettings, request: pytest.FixtureRequest) -> IngestSettings:
    """Per test: a 4 KiB image limit for the limit's test, a slow frame rate for the pacing's."""
    if request.node.name.startswith("test_a_frame_over_the_service_limit"):
        ingest_settings.ingest_max_frame_bytes = 4096
    if request.node.name.startswith("test_a_device_over_the_frame_rate"):
        ingest_settings.ingest_frame_rate = 10.0
        ingest_settings.ingest_frame_burst = 5
    return ingest_settings


async def test_a_malformed_batch_is_refused_whole(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    out_of_order = frames_batch(device.device_id, 1, 3, [frame(2, NOW), frame(1, NOW), frame(3, NOW)])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UploadFrames(frames_stream(out_of_order), metadata=device.metadata)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frames[1].sequence" in violations(raised.value)
    assert await stored(db, device.device_id) == {}


async def test_a_device_writes_frames_only_as_itself(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, register: object
) -> None:
    other = await register("other-pi")  # type: ignore[operator]

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UploadFrames(frames_stream(frames_batch(other.device_id, 1, 1)), metadata=device.metadata)

    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_device_over_the_frame_rate_is_slowed_down_not_refused(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    started = time.monotonic()
    response = await stub.UploadFrames(
        frames_stream(*(frames_batch(device.device_id, s, s + 4) for s in range(1, 16, 5))),
        metadata=device.metadata,
    )

    # 15 frames at 10/s with a burst of 5: the last 10 wait about a second.
    assert time.monotonic() - started >= 0.9
    assert response.committed_sequence == 15
    assert len(await stored(db, device.device_id)) == 15


async def test_frames_the_device_thinned_are_recorded_once_however_often_reported(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    report = ingest_pb2.FrameThinningReport(camera="cam", count=5)
    report.first_capture_time.FromDatetime(NOW - timedelta(hours=2))
    report.last_capture_time.FromDatetime(NOW - timedelta(hours=1))
    batch = frames_batch(device.device_id, 6, 8)  # numbers 1-5 were thinned on the device
    batch.first_sequence = 1
    batch.thinned.append(report)

    for _ in range(2):  # a replay after a lost acknowledgement carries the report again
        response = await stub.UploadFrames(frames_stream(batch), metadata=device.metadata)

    assert response.committed_sequence == 8
    rows = await db.fetch(
        "SELECT camera, count FROM frame_thinning_reports WHERE device_id = $1", device.device_id
    )
    assert [tuple(r) for r in rows] == [("cam", 5)]
