"""Two `sensormesh ingest` processes and two `sensormesh query` processes on one
database: readings uploaded through either ingest process, on real
UploadReadings streams, reach the subscribers of both query processes,
complete and in order. The signal crosses processes through PostgreSQL
LISTEN/NOTIFY: no broker of ours, no polling.

The two ingest processes coalesce their signals over different windows (200 ms
and 5 ms), and each device's batches alternate between them, one stream per
batch, as a gateway's do when its streams are rebalanced between replicas: a
batch's signal from the fast process then regularly overtakes the signal of
the device's previous batch from the slow one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_cli.bearer import aio_interceptors
from tests.support.processes import ServiceProcess
from tests.support.uploads import Gateway, register_gateways, sequence_of

pytestmark = [pytest.mark.storage, pytest.mark.slow, pytest.mark.timeout(180)]

DEVICES = 3
BATCHES = 12
BATCH_SIZE = 40
WINDOWS = ("PT0.2S", "PT0.005S")


def thinned(first: int) -> set[int]:
    """Numbers a gateway dropped before upload (thinning): some batches have holes."""
    return {first + 3, first + 4} if first % (3 * BATCH_SIZE) == 1 else set()


@pytest.fixture
def processes(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[list[ServiceProcess], list[ServiceProcess]]]:
    base = {"SENSORMESH_DATABASE_URL": database_url}
    ingest = [
        ServiceProcess(
            ["ingest"],
            {**base, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0", "SENSORMESH_INGEST_NOTIFY_WINDOW": window},
            tmp_path / f"ingest-{i}.log",
        )
        for i, window in enumerate(WINDOWS)
    ]
    query = [
        ServiceProcess(
            ["query"], {**base, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}, tmp_path / f"query-{i}.log"
        )
        for i in range(2)
    ]
    everything = [*ingest, *query]
    try:
        for process in everything:
            process.wait_serving()
        yield ingest, query
    finally:
        for process in everything:  # all at once: each takes its shutdown grace in parallel
            process.process.terminate()
        codes = [process.stop() for process in everything]
        assert codes == [0] * len(everything), "a service did not shut down cleanly on SIGTERM"


async def _upload_alternating(gateway: Gateway, channels: list[grpc.aio.Channel]) -> list[int]:
    """Every batch on its own stream, through the ingest processes in turn; the numbers sent."""
    sent: list[int] = []
    for number in range(BATCHES):
        first = number * BATCH_SIZE + 1
        last = first + BATCH_SIZE - 1
        skip = thinned(first)
        response = await gateway.upload(channels[number % 2], [gateway.batch(first, last, skip=skip)])
        assert response.committed_sequence == last
        sent += [n for n in range(first, last + 1) if n not in skip]
    return sent


async def _collect(stream: grpc.aio.UnaryStreamCall, count: int) -> tuple[list[query_pb2.Reading], int]:
    readings: list[query_pb2.Reading] = []
    missed = 0
    async with asyncio.timeout(30):
        while len(readings) < count:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            readings += message.readings
            missed += message.missed_count
    return readings, missed


async def test_uploads_through_either_ingest_process_reach_both_query_processes_complete_and_in_order(
    processes: tuple[list[ServiceProcess], list[ServiceProcess]], database_url: str, admin_key: str
) -> None:
    ingest, query = processes
    assert len({p.port for p in (*ingest, *query)}) == 4
    gateways = await register_gateways(database_url, "pi", DEVICES)
    ingest_channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p.port}") for p in ingest]
    query_channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{p.port}", interceptors=aio_interceptors(admin_key))
        for p in query
    ]
    try:
        feeds: dict[tuple[int, str, str], grpc.aio.UnaryStreamCall] = {}
        for q, channel in enumerate(query_channels):
            stub = query_pb2_grpc.QueryServiceStub(channel)
            for gateway in gateways:
                request = query_pb2.WatchReadingsRequest(device_id=gateway.device_id)
                feeds[(q, gateway.device_id, "all")] = stub.WatchReadings(request)
            only_imu = query_pb2.WatchReadingsRequest(device_id=gateways[0].device_id, sensors=["mpu"])
            feeds[(q, gateways[0].device_id, "mpu")] = stub.WatchReadings(only_imu)
        # A feed sends its headers once subscribed: every later commit must reach it.
        async with asyncio.timeout(30):
            for stream in feeds.values():
                await stream.initial_metadata()

        sent_lists = await asyncio.gather(*(_upload_alternating(g, ingest_channels) for g in gateways))
        sent = {g.device_id: numbers for g, numbers in zip(gateways, sent_lists, strict=True)}
        expected = {
            key: sent[key[1]] if key[2] == "all" else [n for n in sent[key[1]] if n % 5] for key in feeds
        }
        results = await asyncio.gather(*(_collect(feeds[key], len(expected[key])) for key in feeds))
        for key, (readings, missed) in zip(feeds, results, strict=True):
            numbers = [sequence_of(r) for r in readings]
            assert missed == 0, key
            # Every number once, in upload order (so per sensor in sample-time order too).
            assert numbers == expected[key], key
            for sensor in {r.sensor for r in readings}:
                times = [r.sample_time.ToNanoseconds() for r in readings if r.sensor == sensor]
                assert times == sorted(times) and len(set(times)) == len(times), (key, sensor)
        for stream in feeds.values():
            stream.cancel()
    finally:
        for channel in (*ingest_channels, *query_channels):
            await channel.close()
