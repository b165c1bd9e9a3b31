"""Two separate `sensormesh query` processes both deliver readings that a third
connection commits and signals: the live feed crosses processes through
PostgreSQL, with no broker of ours and no polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import query_pb2, query_pb2_grpc

from tests.support.processes import ServiceProcess
from tests.support.reading_writer import ReadingWriter, environment

pytestmark = [pytest.mark.storage, pytest.mark.slow]


@pytest.fixture
def query_processes(database_url: str, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    env = {"SENSORMESH_DATABASE_URL": database_url, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}
    processes = [ServiceProcess(["query"], env, tmp_path / f"query-{i}.log") for i in range(2)]
    try:
        for process in processes:
            process.wait_serving()
        yield processes
    finally:
        codes = [process.stop() for process in processes]
        assert codes == [0, 0], "query processes did not shut down cleanly on SIGTERM"


async def test_two_query_processes_both_receive_signalled_readings(
    query_processes: list[ServiceProcess], writer: ReadingWriter, device: str
) -> None:
    ports = [p.port for p in query_processes]
    assert len(set(ports)) == 2
    now = datetime.now(UTC)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    try:
        streams = [
            query_pb2_grpc.QueryServiceStub(c).WatchReadings(query_pb2.WatchReadingsRequest(device_id=device))
            for c in channels
        ]
        # A feed sends its response headers once it is subscribed: from then on
        # every commit reaches it live (no replay is asked for here).
        async with asyncio.timeout(20):
            for stream in streams:
                await stream.initial_metadata()
        for i in range(5):
            await writer.write(device, [environment("bme280", now + timedelta(seconds=i), 20.0 + i)])

        async def read_five(stream: grpc.aio.UnaryStreamCall) -> list[float]:
            values: list[float] = []
            async with asyncio.timeout(20):
                while len(values) < 5:
                    message = await stream.read()
                    values += [r.environment.temperature_celsius for r in message.readings]
            return values

        got = await asyncio.gather(*(read_five(s) for s in streams))
        assert got == [[20.0, 21.0, 22.0, 23.0, 24.0]] * 2
        for stream in streams:
            stream.cancel()
    finally:
        for c in channels:
            await c.close()
