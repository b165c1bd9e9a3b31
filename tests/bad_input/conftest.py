"""The whole stack for the bad-input suite: a real `sensormesh ingest` and a
real `sensormesh query` (each in its own process, on one migrated database)
behind the real Envoy binary, started once for the package.

Every test is checked afterwards: both services still answer health checks
SERVING, valid requests still work (a write and an offset over gRPC through
Envoy, a list over REST), and neither service logged a failed call
(`event=rpc_failed`, which is what an unexpected exception in a handler
becomes) or a traceback while it ran.

Operator calls carry the package's admin key (`http` sends it by default;
`anonymous` is a client that sends no credential); device calls carry the
device's own token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, RateLimits, start_envoy
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import ensure_database
from tests.bad_input.messages import imu_reading
from tests.bad_input.stack import Device, Stack
from tests.conftest import _drop_database
from tests.support.access import make_key
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.storage


@pytest.fixture(scope="package")
def stack_database_url(postgres_admin_url: str, migrated_template: str) -> Iterator[str]:
    name = f"sensormesh_bad_input_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture(scope="package")
def stack(stack_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("bad-input-stack")
    env = {"SENSORMESH_DATABASE_URL": stack_database_url, "SENSORMESH_POOL_MIN_SIZE": "1"}
    ingest = ServiceProcess(
        ["ingest"], {**env, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0"}, logs / "ingest.log"
    )
    query = ServiceProcess(["query"], {**env, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}, logs / "query.log")
    envoy = None
    try:
        ingest_port, query_port = ingest.wait_serving(), query.wait_serving()
        options = EnvoyOptions(
            listen_port=free_port(),
            admin_port=free_port(),
            ingest=("127.0.0.1", ingest_port),
            query=("127.0.0.1", query_port),
            health_check_interval_s=1.0,
            # The suite sends thousands of requests in a few seconds; the rate limit has its own test.
            rate_limits=RateLimits.every(100_000),
        )
        envoy = start_envoy(options, log_dir=Path(logs))
        admin_key = asyncio.run(make_key(stack_database_url, "bad-input-admin"))
        running = Stack(ingest, query, envoy, stack_database_url, admin_key)
        running.wait_routable()
        yield running
    finally:
        if envoy is not None:
            envoy.stop()
        ingest.stop()
        query.stop()


def _serving(target: str, service: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="package")
def canary(stack: Stack) -> Device:
    """A device whose valid requests must keep working, whatever a test sent before."""
    return stack.register("canary")


def _valid_requests_work(stack: Stack, canary: Device) -> None:
    with grpc.insecure_channel(stack.envoy_target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        before = stub.GetUploadOffset(
            ingest_pb2.GetUploadOffsetRequest(device_id=canary.device_id),
            metadata=canary.metadata,
            timeout=10,
        ).committed_sequence
        written = stub.WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=canary.device_id, readings=[imu_reading()]),
            metadata=canary.metadata,
            timeout=10,
        )
    assert (written.accepted_count, written.committed_sequence) == (1, before + 1)
    with httpx.Client(base_url=stack.url, timeout=10, headers=stack.admin_headers) as http:
        assert http.get("/v1/devices", params={"pageSize": 1}).status_code == 200


@pytest.fixture(autouse=True)
def services_stay_up(stack: Stack, canary: Device) -> Iterator[None]:
    """After each test: both services alive and SERVING, valid requests answered, no failed
    call logged."""
    marks = stack.log_marks()
    yield
    for name, process in (("ingest", stack.ingest), ("query", stack.query)):
        assert process.process.poll() is None, f"{name} exited:\n{stack.log_tail(name)}"
    assert _serving(stack.ingest_target, "sensormesh.v1.IngestService")
    assert _serving(stack.query_target, "sensormesh.v1.QueryService")
    assert _serving(stack.query_target, "sensormesh.v1.DeviceService")
    _valid_requests_work(stack, canary)
    failures = stack.failures_since(marks)
    assert not failures, "the services logged failed calls:\n" + "\n".join(failures)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    """A client of Envoy whose requests carry the admin key (a request's own authorization header wins)."""
    with httpx.Client(base_url=stack.url, timeout=30, headers=stack.admin_headers) as client:
        yield client


@pytest.fixture
def anonymous(stack: Stack) -> Iterator[httpx.Client]:
    """A client of Envoy that sends no credential of its own: for calls that must carry none,
    or only the one the test gives."""
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


@pytest.fixture
def db(stack: Stack) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def device(stack: Stack) -> Device:
    """A freshly registered device (through REST), with its token."""
    return stack.register("bad")
