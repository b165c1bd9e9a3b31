"""Upload streams that end badly: the client cancels mid-stream, a gRPC
message or an HTTP/2 frame is cut in half and the connection dropped, the
stream is reset, the TCP connection is torn down without a goodbye.

Whatever the cut, every batch received whole is committed exactly once and
nothing of the cut one is; the mark says how far; the device resumes from
it; the services stay up (checked after each test by conftest)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import psycopg
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc

from sensormesh_core.columnar import columnar_request
from tests.bad_input.messages import UPLOAD, imu_reading, payload_reading
from tests.bad_input.raw_h2 import RawCall, grpc_frame
from tests.bad_input.stack import Device, Stack, committed, stored_count, wait_for

pytestmark = pytest.mark.storage

BATCH = 50


@dataclass(frozen=True)
class Uploader(Device):
    """A device that sends its batches as rows or, with `columns`, in columns."""

    columns: bool = False


@pytest.fixture(params=["rows", "columns"])
def device(request: pytest.FixtureRequest, device: Device) -> Device:
    """The package's fresh device, once sending rows and once columns."""
    return Uploader(device.device_id, device.token, request.param == "columns")


def _batch(device: Device, number: int) -> ingest_pb2.UploadReadingsRequest:
    """Batch `number` (from 0): sequences number*BATCH+1 .. (number+1)*BATCH."""
    first = number * BATCH + 1
    request = ingest_pb2.UploadReadingsRequest(
        device_id=device.device_id, first_sequence=first, last_sequence=first + BATCH - 1
    )
    for sequence in range(first, first + BATCH):
        request.readings.add(sequence=sequence, reading=imu_reading(offset_s=-300 + sequence / 100))
    return columnar_request(request) if getattr(device, "columns", False) else request


def _resumes(stack: Stack, device: Device, db: psycopg.Connection, batches: int) -> None:
    """Exactly `batches` whole batches stored, and an upload from the mark completes the rest."""
    wait_for(lambda: committed(db, device.device_id) == batches * BATCH, f"mark at {batches * BATCH}")
    assert stored_count(db, device.device_id) == batches * BATCH
    with grpc.insecure_channel(stack.envoy_target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        mark = stub.GetUploadOffset(
            ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id),
            metadata=device.metadata,
            timeout=10,
        ).committed_sequence
        rest = [_batch(device, n) for n in range(mark // BATCH, batches + 2)]
        response = stub.UploadReadings(iter(rest), metadata=device.metadata, timeout=30)
    assert (response.committed_sequence, response.duplicate_count) == ((batches + 2) * BATCH, 0)
    assert stored_count(db, device.device_id) == (batches + 2) * BATCH


@pytest.mark.parametrize("via", ["envoy", "direct"])
def test_a_client_cancelling_mid_stream_keeps_what_was_committed(
    via: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    hold = threading.Event()

    def requests() -> Iterator[ingest_pb2.UploadReadingsRequest]:
        for number in range(3):
            yield _batch(device, number)
        hold.wait(30)  # the stream stays open, idle, until the test cancels it

    target = stack.envoy_target if via == "envoy" else stack.ingest_target
    with grpc.insecure_channel(target) as channel:
        call = ingest_pb2_grpc.IngestServiceStub(channel).UploadReadings.future(
            requests(), metadata=device.metadata
        )
        wait_for(lambda: committed(db, device.device_id) == 3 * BATCH, "three batches committed")
        assert call.cancel()
        hold.set()
    _resumes(stack, device, db, 3)


@pytest.mark.parametrize("via", ["envoy", "direct"])
@pytest.mark.parametrize("cut", ["message", "frame", "reset"])
def test_a_half_written_message_is_dropped_and_the_whole_ones_kept(
    cut: str, via: str, stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    port = stack.envoy.options.listen_port if via == "envoy" else stack.ingest.port
    call = RawCall(port, UPLOAD, device.metadata)
    call.send(
        grpc_frame(_batch(device, 0).SerializeToString()) + grpc_frame(_batch(device, 1).SerializeToString())
    )
    third = grpc_frame(_batch(device, 2).SerializeToString())
    wait_for(lambda: committed(db, device.device_id) == 2 * BATCH, "two batches committed")
    if cut == "message":
        call.send(third[: len(third) // 2])  # a whole DATA frame holding half a gRPC message
        call.abort()
    elif cut == "frame":
        call.send_cut_frame(third, keep=len(third) // 3)  # the DATA frame itself stops short
        call.abort()
    else:
        call.send(third[:100])
        call.reset()
        call.abort()
    _resumes(stack, device, db, 2)


def test_the_end_of_a_stream_inside_a_message_is_not_a_batch(
    stack: Stack, device: Device, db: psycopg.Connection
) -> None:
    """END_STREAM after half a message: the client says it is done, mid-message. grpc ends
    the call with the response of the whole batches (OK, committed_sequence at their end);
    the half message is no batch and stores nothing."""
    call = RawCall(stack.ingest.port, UPLOAD, device.metadata)
    whole, cut = (grpc_frame(_batch(device, n).SerializeToString()) for n in (0, 1))
    call.send(whole + cut[:40], end=True)
    outcome = call.outcome()
    call.abort()
    assert outcome not in ("2", "13"), outcome  # never UNKNOWN or INTERNAL
    _resumes(stack, device, db, 1)


@pytest.mark.parametrize(
    "junk",
    [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",  # the preface, then 2 bytes of a frame header
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + b"\x00\x10\x00\x01\x05\x00\x00\x00\x01"
        + b"\xff" * 5,  # HEADERS cut short
        b"GET /sensormesh.v1.IngestService/UploadReadings HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # the start of a TLS hello
    ],
    ids=["half a frame header", "headers cut short", "HTTP/1.1", "TLS"],
)
def test_connections_that_are_not_http2_or_stop_in_a_frame_are_dropped(junk: bytes, stack: Stack) -> None:
    for port in (stack.ingest.port, stack.query.port, stack.envoy.options.listen_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass


def test_live_feed_clients_that_leave_early_are_not_errors(stack: Stack, device: Device) -> None:
    """A feed client going away is ordinary: REST through Envoy (the connection closes after the
    headers), gRPC (the call is cancelled), during the replay or live. The services log no error
    for it (conftest checks)."""
    readings = [
        payload_reading(kind)
        for kind in ("imu", "environment", "system", "measurement", "link_health")
        for _ in range(40)
    ]
    write = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings)
    with grpc.insecure_channel(stack.envoy_target) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(write, metadata=device.metadata, timeout=30)
    since = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with httpx.Client(base_url=stack.url, timeout=10, headers=stack.admin_headers) as http:
        for params in ({}, {"startTime": since}) * 15:
            with http.stream(
                "GET", f"/v1/devices/{device.device_id}/readings:watch", params=params
            ) as response:
                assert response.status_code == 200
    with grpc.insecure_channel(stack.envoy_target) as channel:
        for _ in range(3):
            call = query_pb2_grpc.QueryServiceStub(channel).WatchReadings(
                query_pb2.WatchReadingsRequest(
                    device_id=device.device_id, start_time={"seconds": int(time.time()) - 1800}
                ),
                metadata=stack.admin_metadata,
            )
            call.initial_metadata()
            call.cancel()
