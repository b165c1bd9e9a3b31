"""The uplink against an in-memory ingest double on a real gRPC server over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from gateway_agent.buffer import Buffer, BufferSettings
from gateway_agent.status import StatusBoard
from gateway_agent.uplink import Uplink
from sensormesh_core.telemetry import Telemetry, configure_telemetry
from tests.gateway_agent.conftest import DEVICE_ID, TOKEN, Ingest, UplinkFactory, imu_records
from tests.gateway_agent.ingest_double import IngestDouble, serve
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def assert_stored_exactly_once(servicer: IngestDouble, count: int) -> None:
    assert servicer.stored_twice == 0
    assert sorted(servicer.stored) == list(range(1, count + 1))
    # Sequence i carries the reading taken i-th (its index is in acceleration_x).
    assert all(servicer.stored[s].imu.acceleration_x_mps2 == s - 1 for s in (1, count // 2, count))


async def test_backlog_is_uploaded_exactly_once_and_forgotten_after_the_ack(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    buffer.add(imu_records(0, 5000))
    await buffer.flush()
    uplink = make_uplink(ingest.target, buffer)
    async with running(uplink):
        await until(lambda: uplink.committed == 5000)
    assert_stored_exactly_once(ingest.servicer, 5000)
    assert ingest.servicer.streams >= 3  # bounded streams: 4 batches of 500 each at most
    assert (await buffer.stats()).pending == 0


async def test_readings_taken_while_draining_are_uploaded_too(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    buffer.add(imu_records(0, 3000))
    uplink = make_uplink(ingest.target, buffer)
    async with running(uplink):
        for start in range(3000, 4000, 100):
            buffer.add(imu_records(start, 100))
            await asyncio.sleep(0.005)
        await until(lambda: ingest.servicer.committed == 4000)
    assert_stored_exactly_once(ingest.servicer, 4000)


async def test_stream_broken_mid_way_resumes_from_the_servers_offset(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    async def break_first_stream(
        servicer: IngestDouble, _batch: object, context: grpc.aio.ServicerContext
    ) -> None:
        if servicer.streams == 1 and servicer.batches == 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")

    ingest.servicer.fault = break_first_stream
    buffer.add(imu_records(0, 4000))
    await buffer.flush()
    uplink = make_uplink(ingest.target, buffer)
    async with running(uplink):
        await until(lambda: uplink.committed == 4000)
    assert_stored_exactly_once(ingest.servicer, 4000)
    assert ingest.servicer.duplicates == 0  # resumed after the mark, nothing was resent


async def test_lost_acknowledgement_sends_nothing_twice(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    # Every batch of the first stream is committed, then the stream fails before its response.
    async def lose_first_response(
        servicer: IngestDouble, _batch: object, context: grpc.aio.ServicerContext
    ) -> None:
        if servicer.streams == 1 and servicer.batches == 4:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "response lost")

    ingest.servicer.fault = lose_first_response
    buffer.add(imu_records(0, 3000))
    await buffer.flush()
    uplink = make_uplink(ingest.target, buffer)
    async with running(uplink):
        await until(lambda: uplink.committed == 3000)
    assert_stored_exactly_once(ingest.servicer, 3000)


async def test_ingest_restarted_mid_stream_loses_and_duplicates_nothing(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    buffer.add(imu_records(0, 20_000))
    await buffer.flush()
    uplink = make_uplink(ingest.target, buffer, batch_max_readings=200)
    async with running(uplink):
        await until(lambda: ingest.servicer.committed >= 3000)
        await ingest.restart()
        await until(lambda: uplink.committed == 20_000)
    assert_stored_exactly_once(ingest.servicer, 20_000)


async def test_ingest_down_at_start_is_retried_with_backoff(
    buffer: Buffer, make_uplink: UplinkFactory, unused_tcp_port: int
) -> None:
    buffer.add(imu_records(0, 100))
    await buffer.flush()
    servicer = IngestDouble(DEVICE_ID, TOKEN)
    uplink = make_uplink(f"127.0.0.1:{unused_tcp_port}", buffer)
    async with running(uplink):
        await asyncio.sleep(0.3)  # nothing listens yet: let the uplink fail a few times
        assert uplink.committed is None
        server, _ = await serve(servicer, unused_tcp_port)
        try:
            await until(lambda: uplink.committed == 100)
        finally:
            await server.stop(grace=None)
    assert_stored_exactly_once(servicer, 100)


async def test_a_wrong_token_keeps_every_reading_buffered(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    buffer.add(imu_records(0, 50))
    await buffer.flush()
    uplink = make_uplink(ingest.target, buffer, token="wrong")
    async with running(uplink):
        await until(lambda: "code=UNAUTHENTICATED" in caplog.text)
    assert ingest.servicer.stored == {}
    assert (await buffer.stats()).pending == 50


async def test_statuses_and_thinning_reports_reach_the_server_once(
    ingest: Ingest, tmp_path: Path, make_uplink: UplinkFactory
) -> None:
    buf = await Buffer.open(BufferSettings(path=tmp_path / "small.sqlite3", disk_budget=2 * 1024 * 1024))
    try:
        for start in range(0, 60_000, 5000):
            buf.add(imu_records(start, 5000))
            await buf.flush()
        expected = sum(t.count for t in await buf.pending_thinning())
        assert expected > 0
        board = StatusBoard()
        board.succeeded("simulated")
        board.failed("bme280", "no BME280 at 0x76 on bus 1: chip id 0x58")
        uplink = make_uplink(ingest.target, buf, board, batch_max_readings=5000, stream_max_batches=20)
        async with running(uplink):
            await until(lambda: uplink.committed == 60_000)
            await until(lambda: len(ingest.servicer.stored) + expected == 60_000)
        assert sum(r.count for r in ingest.servicer.thinned) == expected
        assert {r.sensor for r in ingest.servicer.thinned} == {"imu-1"}
        assert await buf.pending_thinning() == []
        states = {s.input: s for s in ingest.servicer.statuses}
        assert states["bme280"].state == ingest_pb2.INPUT_STATE_FAILING
        assert states["bme280"].error_count == 1
        assert "chip id" in states["bme280"].last_error
        assert states["simulated"].state == ingest_pb2.INPUT_STATE_OK
        assert len(ingest.servicer.statuses) == 2  # sent once, acknowledged, not repeated
    finally:
        await buf.close()


async def test_status_change_without_new_readings_is_still_reported(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    buffer.add(imu_records(0, 10))
    board = StatusBoard()
    uplink = make_uplink(ingest.target, buffer, board)
    async with running(uplink):
        await until(lambda: uplink.committed == 10)
        board.failed("mpu6050", "Remote I/O error")
        await until(lambda: any(s.input == "mpu6050" for s in ingest.servicer.statuses))
    assert ingest.servicer.committed == 10


async def test_upload_trace_continues_into_the_ingest_service(
    buffer: Buffer, make_uplink: UplinkFactory, telemetry: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    server_spans = InMemorySpanExporter()
    server_telemetry = configure_telemetry(
        "test-ingest", span_processor=SimpleSpanProcessor(server_spans), set_global=False
    )
    servicer = IngestDouble(DEVICE_ID, TOKEN)
    server, port = await serve(servicer, interceptors=server_telemetry.server_interceptors())
    try:
        buffer.add(imu_records(0, 1000))
        uplink = make_uplink(f"127.0.0.1:{port}", buffer)
        async with running(uplink):
            await until(lambda: uplink.committed == 1000)
    finally:
        await server.stop(grace=None)
    agent_spans = telemetry[1].get_finished_spans()
    stream = next(s for s in agent_spans if s.name == "upload stream")
    batches = [
        s for s in agent_spans if s.name == "upload batch" and s.context.trace_id == stream.context.trace_id
    ]
    assert batches and batches[0].attributes["sensormesh.first_sequence"] == 1
    ingest_upload = [s for s in server_spans.get_finished_spans() if "UploadReadings" in s.name]
    assert stream.context.trace_id in {s.context.trace_id for s in ingest_upload}


async def test_gzip_uploads_are_accepted(ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory) -> None:
    buffer.add(imu_records(0, 1000))
    uplink = make_uplink(ingest.target, buffer, gzip=True)
    async with running(uplink):
        await until(lambda: uplink.committed == 1000)
    assert_stored_exactly_once(ingest.servicer, 1000)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl (which makes the test certificate) is not on PATH")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


async def test_tls_with_a_configured_ca(
    certificate: tuple[Path, Path], buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    key, cert = certificate
    servicer = IngestDouble(DEVICE_ID, TOKEN)
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        buffer.add(imu_records(0, 100))
        uplink = make_uplink(f"localhost:{port}", buffer, tls=True, ca_file=cert)
        async with running(uplink):
            await until(lambda: uplink.committed == 100)
    finally:
        await server.stop(grace=None)
    assert_stored_exactly_once(servicer, 100)


async def test_tls_refuses_a_server_the_ca_did_not_sign(
    certificate: tuple[Path, Path],
    buffer: Buffer,
    make_uplink: UplinkFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, cert = certificate
    servicer = IngestDouble(DEVICE_ID, TOKEN)
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    )
    await server.start()
    try:
        buffer.add(imu_records(0, 10))
        uplink = make_uplink(
            f"localhost:{port}", buffer, tls=True
        )  # system roots: the self-signed cert fails
        async with running(uplink):
            await until(lambda: "code=UNAVAILABLE" in caplog.text)
    finally:
        await server.stop(grace=None)
    assert servicer.stored == {}


async def test_send_now_cuts_the_batch_wait_and_ends_the_stream_so_the_ack_follows(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    # Batches wait 30 s to fill and streams last a minute: only send_now() gets these out soon.
    uplink = make_uplink(ingest.target, buffer, batch_max_age=timedelta(seconds=30),
                         stream_max_duration=timedelta(seconds=60), stream_max_batches=50)  # fmt: skip
    async with running(uplink) as task:
        await until(uplink.connected.is_set)
        buffer.add(imu_records(0, 30))
        await buffer.flush()
        uplink.send_now()
        async with asyncio.timeout(10):
            await uplink.wait_acknowledged(30)
        assert ingest.servicer.committed == 30
        buffer.add(imu_records(30, 10))  # each request is answered the same way
        await buffer.flush()
        uplink.send_now()
        async with asyncio.timeout(10):
            await uplink.wait_acknowledged(40)
        uplink.stop()  # and stop() does not wait out batch_max_age either
        async with asyncio.timeout(5):
            await task
    assert_stored_exactly_once(ingest.servicer, 40)


async def test_stop_uploads_the_whole_backlog_though_streams_end_on_their_own_limits(
    ingest: Ingest, buffer: Buffer, make_uplink: UplinkFactory
) -> None:
    # One batch of 100 per stream: stop() arrives while 40 streams' worth is still buffered.
    uplink = make_uplink(ingest.target, buffer, batch_max_readings=100, stream_max_batches=1)
    buffer.add(imu_records(0, 4000))
    await buffer.flush()
    async with running(uplink) as task:
        await until(uplink.connected.is_set)
        uplink.stop()
        async with asyncio.timeout(30):
            await task
    assert_stored_exactly_once(ingest.servicer, 4000)
    assert ingest.servicer.streams >= 40
    assert (await buffer.stats()).pending == 0
