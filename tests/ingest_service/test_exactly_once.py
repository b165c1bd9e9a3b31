"""Exactly once through real gRPC and PostgreSQL: cut streams, replays,
overlaps and the same batch on two streams store every reading once, with no
gap, and the stored values add up to what was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from ingest_service.server import IngestServer
from tests.ingest_service.conftest import Device
from tests.ingest_service.readings import batch, batches, expected, mark, reading, stored, stream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage
UPLOAD_FORMS = ("rows", "columns")


async def test_a_stream_commits_every_batch_and_reports_the_mark(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    response = await stub.UploadReadings(
        stream(batches(device.device_id, 1, 1000, 250)), metadata=device.metadata
    )

    assert (response.committed_sequence, response.accepted_count, response.duplicate_count) == (1000, 1000, 0)
    assert await stored(db, device.device_id) == expected(range(1, 1001))
    offset = await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert offset.committed_sequence == 1000 and offset.update_time.seconds > 0


async def test_a_stream_cut_midway_resumes_from_the_offset(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    sent = asyncio.Event()

    async def cut_after_three() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        for request in batches(device.device_id, 1, 300, 100):
            yield request
        sent.set()
        yield batch(device.device_id, 301, 400)  # in flight when the stream is cut
        await asyncio.Event().wait()  # the gateway loses its link here

    call = stub.UploadReadings(cut_after_three(), metadata=device.metadata)
    await sent.wait()
    await wait_until(lambda: _mark_at_least(db, device.device_id, 300))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    # The gateway reconnects, asks how far it got, and resends the rest in
    # batches of another size.
    offset = await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )
    assert offset.committed_sequence in (300, 400)
    resumed = batches(device.device_id, offset.committed_sequence + 1, 1000, 170)
    response = await stub.UploadReadings(stream(resumed), metadata=device.metadata)

    # The batch in flight at the cut still commits (the service commits what it received), possibly
    # after the offset was read: then the resent 301-400 are duplicates, dropped. Stored once either way.
    assert response.committed_sequence == 1000
    assert response.duplicate_count in ({0, 100} if offset.committed_sequence == 300 else {0})
    assert await stored(db, device.device_id) == expected(range(1, 1001))


async def _mark_at_least(db: asyncpg.Connection, device_id: str, sequence: int) -> bool:
    return await mark(db, device_id) >= sequence


async def test_overlapping_and_replayed_batches_are_stored_once(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    d = device.device_id
    sent = [batch(d, 1, 100), batch(d, 51, 150), batch(d, 1, 150), batch(d, 120, 200), batch(d, 200, 200)]

    response = await stub.UploadReadings(stream(sent), metadata=device.metadata)

    assert response.committed_sequence == 200
    assert response.accepted_count == 200
    assert response.duplicate_count == 50 + 150 + 31 + 1
    assert await stored(db, d) == expected(range(1, 201))


async def test_a_replayed_stream_is_acknowledged_and_not_stored_again(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    upload = batches(device.device_id, 1, 500, 100)
    await stub.UploadReadings(stream(upload), metadata=device.metadata)

    again = await stub.UploadReadings(stream(upload), metadata=device.metadata)

    assert (again.committed_sequence, again.accepted_count, again.duplicate_count) == (500, 0, 500)
    assert await stored(db, device.device_id) == expected(range(1, 501))


async def test_the_same_batches_on_two_streams_at_once_are_stored_once(
    ingest: IngestServer, stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    upload = batches(device.device_id, 1, 2000, 200)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as other:
        second = ingest_pb2_grpc.IngestServiceStub(other)
        responses = await asyncio.gather(
            stub.UploadReadings(stream(upload), metadata=device.metadata),
            second.UploadReadings(stream(upload), metadata=device.metadata),
        )

    assert [r.committed_sequence for r in responses] == [2000, 2000]
    assert sum(r.accepted_count for r in responses) == 2000
    assert sum(r.duplicate_count for r in responses) == 2000
    assert await stored(db, device.device_id) == expected(range(1, 2001))


async def test_thinned_numbers_inside_a_batch_move_the_mark_without_gaps_in_storage(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    thinned = set(range(10, 20)) | {100}  # discarded on the device, reported, never sent
    request = batch(device.device_id, 1, 100, skip=thinned)
    request.thinned.add(sensor="mpu6050-0x68", count=11, first_sample_time=reading(10).sample_time,
                        last_sample_time=reading(100).sample_time)  # fmt: skip

    response = await stub.UploadReadings(stream([request, request]), metadata=device.metadata)

    assert response.committed_sequence == 100
    assert await stored(db, device.device_id) == expected(set(range(1, 101)) - thinned)
    reports = await db.fetch("SELECT sensor, count, batch_last_sequence FROM thinning_reports")
    assert [tuple(r) for r in reports] == [("mpu6050-0x68", 11, 100)]  # stored once, not per replay


async def test_a_batch_of_reports_only_stores_them_once_without_moving_the_mark(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    """What an agent sends when it has statuses or thinning to report but no new
    readings: a batch covering only its committed sequence."""
    d = device.device_id
    await stub.UploadReadings(stream([batch(d, 1, 10)]), metadata=device.metadata)
    reports = ingest_pb2.UploadReadingsRequest(device_id=d, first_sequence=10, last_sequence=10)
    reports.thinned.add(sensor="mpu6050-0x68", count=500, first_sample_time=reading(1).sample_time,
                        last_sample_time=reading(5).sample_time)  # fmt: skip
    reports.input_statuses.add(input="bme280", state=ingest_pb2.INPUT_STATE_FAILING, last_error="I2C NACK at 0x76",
                               error_count=3, observe_time=reading(9).sample_time)  # fmt: skip
    older = ingest_pb2.UploadReadingsRequest(device_id=d, first_sequence=10, last_sequence=10)
    older.input_statuses.add(
        input="bme280", state=ingest_pb2.INPUT_STATE_OK, observe_time=reading(2).sample_time
    )

    response = await stub.UploadReadings(stream([reports, reports, older]), metadata=device.metadata)

    assert (response.committed_sequence, response.accepted_count, response.duplicate_count) == (10, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM thinning_reports") == 1
    state = await db.fetchrow(
        "SELECT state, last_error, error_count FROM device_inputs WHERE device_id = $1", d
    )
    assert tuple(state) == (ingest_pb2.INPUT_STATE_FAILING, "I2C NACK at 0x76", 3)  # the older status lost


async def test_write_readings_numbers_after_the_mark_or_as_given(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection
) -> None:
    d = device.device_id
    await stub.UploadReadings(stream([batch(d, 1, 10)]), metadata=device.metadata)
    unnumbered = ingest_pb2.WriteReadingsRequest(device_id=d, readings=[reading(s) for s in (11, 12, 13)])

    first = await stub.WriteReadings(unnumbered, metadata=device.metadata)
    numbered = ingest_pb2.WriteReadingsRequest(
        device_id=d, first_sequence=13, readings=[reading(13), reading(14)]
    )
    second = await stub.WriteReadings(numbered, metadata=device.metadata)

    assert (first.committed_sequence, first.accepted_count) == (13, 3)
    assert (second.committed_sequence, second.accepted_count, second.duplicate_count) == (14, 1, 1)
    assert await stored(db, d) == expected(range(1, 15))


async def test_an_empty_stream_reports_the_mark(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    await stub.UploadReadings(stream([batch(device.device_id, 1, 42)]), metadata=device.metadata)

    response = await stub.UploadReadings(stream([]), metadata=device.metadata)

    assert (response.committed_sequence, response.accepted_count) == (42, 0)


async def test_a_batch_still_being_prepared_when_the_call_is_cancelled_commits(
    ingest: IngestServer, stub: ingest_pb2_grpc.IngestServiceStub, device: Device, db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # gRPC cancels the call when a message over the size limit arrives after a good batch: the
    # good one, already received, commits as those before it would have (nothing valid is lost).
    preparer = ingest.app.preparer
    upload = preparer.upload
    preparing = asyncio.Event()

    async def slow_upload(*args: object, **kwargs: object) -> object:
        preparing.set()
        await asyncio.sleep(0.5)
        return await upload(*args, **kwargs)

    monkeypatch.setattr(preparer, "upload", slow_upload)

    async def one_then_wait() -> AsyncIterator[ingest_pb2.UploadReadingsRequest]:
        yield batch(device.device_id, 1, 100)
        await asyncio.Event().wait()

    call = stub.UploadReadings(one_then_wait(), metadata=device.metadata)
    await preparing.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await wait_until(lambda: _mark_at_least(db, device.device_id, 100))
    assert await stored(db, device.device_id) == expected(range(1, 101))


async def test_the_offset_tells_a_client_that_columns_are_stored(
    stub: ingest_pb2_grpc.IngestServiceStub, device: Device
) -> None:
    response = await stub.GetUploadOffset(
        ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id), metadata=device.metadata
    )

    assert response.columns_accepted  # a service without it would drop columns unseen
