"""The server's wiring: health checking, reflection, settings, two services in
one process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import grpc
import psycopg
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ingest_service.health import DatabaseHealth
from ingest_service.server import SERVICE_NAME, IngestServer, server_options, start
from ingest_service.settings import IngestSettings
from sensormesh_core.storage.embedded import ensure_database
from sensormesh_core.telemetry import Telemetry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.storage


async def test_health_reports_serving_overall_and_for_the_service(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one() -> object:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(one()):
        names |= {s.name for s in response.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


async def test_two_services_run_side_by_side_in_one_process(
    ingest: IngestServer, ingest_settings: IngestSettings, telemetry: Telemetry
) -> None:
    second = await start(ingest_settings, telemetry=telemetry)
    try:
        assert second.port != ingest.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await second.stop(grace=1)
    await second.stop(grace=1)  # stopping twice is harmless


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORMESH_INGEST_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("SENSORMESH_INGEST_MAX_BATCH_READINGS", "500")
    monkeypatch.setenv("SENSORMESH_INGEST_FUTURE_TOLERANCE", "PT1M")
    monkeypatch.setenv("SENSORMESH_INGEST_TIME_FLOOR", "2024-06-01T00:00:00")
    monkeypatch.setenv("SENSORMESH_RETENTION", "P7D")

    settings = IngestSettings()

    assert settings.ingest_listen == "0.0.0.0:6000"
    assert settings.ingest_max_batch_readings == 500
    assert settings.ingest_future_tolerance == timedelta(minutes=1)
    assert settings.ingest_time_floor == datetime(2024, 6, 1, tzinfo=UTC)
    assert settings.retention == timedelta(days=7)


def test_defaults_are_the_agreed_ones() -> None:
    settings = IngestSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ingest_listen == "127.0.0.1:50051"
    assert settings.ingest_max_batch_readings == 10_000
    options = dict(server_options(settings))
    assert options["grpc.max_connection_age_ms"] == 15 * 60 * 1000
    assert options["grpc.max_connection_age_grace_ms"] == 60 * 1000
    assert options["grpc.keepalive_time_ms"] == 120 * 1000


@pytest.mark.parametrize("listen", ["50051", "localhost", ":50051", "host:port", "host:70000"])
def test_a_bad_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        IngestSettings(ingest_listen=listen)


async def test_a_database_that_is_not_migrated_is_reported(
    empty_database_url: str, telemetry: Telemetry
) -> None:
    settings = IngestSettings(database_url=empty_database_url, ingest_listen="127.0.0.1:0")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="sensormesh db migrate"):
        await start(settings, telemetry=telemetry)


async def test_readiness_follows_the_database(empty_database_url: str, postgres_admin_url: str) -> None:
    """NOT_SERVING for the service while its database is gone, SERVING when it is back."""
    name = urlsplit(empty_database_url).path.lstrip("/")
    servicer = health.aio.HealthServicer()
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=1)
    watcher = DatabaseHealth(servicer, SERVICE_NAME, pool, interval=0.05)
    running = asyncio.create_task(watcher.run())

    async def status() -> int:
        response = await servicer.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), None)
        return int(response.status)

    async def reads(expected: int) -> bool:
        return await status() == expected

    try:
        await servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await wait_until(lambda: reads(health_pb2.HealthCheckResponse.NOT_SERVING))
        ensure_database(postgres_admin_url, name)
        await wait_until(lambda: reads(health_pb2.HealthCheckResponse.SERVING))
    finally:
        running.cancel()
        pool.terminate()
