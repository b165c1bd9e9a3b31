"""Real `sensormesh ingest`, `sensormesh query` and `sensormesh control` processes over one migrated database, shared by
a module's tests (each test uses its own device ids), for the operator's commands, with an admin
API key made on that database (in `admin_key`, and written to `admin_key_file` as `sensormesh up`
writes `.sensormesh/admin.key`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import ensure_database
from sensormesh_core.tokens import write_token_file
from tests.conftest import _drop_database
from tests.support.access import make_key
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess


@dataclass(frozen=True)
class Services:
    database_url: str
    ingest: str  # host:port
    query: str
    admin_key: str
    admin_key_file: Path
    control: str = ""


def _wait_serving(target: str, service: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while service.process.poll() is None and time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
            except grpc.RpcError:
                continue
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise AssertionError(service.log_path.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def services(
    postgres_admin_url: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    name = f"sensormesh_stack_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    url = with_database(postgres_admin_url, name)
    logs = Path(tmp_path_factory.mktemp("services"))
    admin_key = asyncio.run(make_key(url, "cli-tests-admin"))
    write_token_file(logs / "admin.key", admin_key)
    ingest, query, control = (f"127.0.0.1:{free_port()}" for _ in range(3))
    env = {"SENSORMESH_DATABASE_URL": url, "SENSORMESH_INGEST_NOTIFY_WINDOW": "PT0S"}
    started = [
        ServiceProcess(["ingest", "--listen", ingest], env, logs / "ingest.log"),
        ServiceProcess(["query", "--listen", query, "--grace", "1"], env, logs / "query.log"),
        ServiceProcess(["control", "--listen", control, "--grace", "1"], env, logs / "control.log"),
    ]
    try:
        for target, process in zip((ingest, query, control), started, strict=True):
            _wait_serving(target, process)
        yield Services(url, ingest, query, admin_key, logs / "admin.key", control)
    finally:
        for process in started:
            process.stop()
        _drop_database(postgres_admin_url, name)
