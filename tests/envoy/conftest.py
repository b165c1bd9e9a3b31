"""The real Envoy binary in front of real `sensormesh ingest`, `sensormesh query`
and `sensormesh control` processes, over one migrated database, shared by the tests
of a module: Envoy's and the services' start-up are paid once. Tests use
their own device ids, registered over REST with their own tokens; operator calls
carry the module's admin key (`http` sends it by default)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess, RateLimits, start_envoy
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import ensure_database
from tests.conftest import _drop_database
from tests.support.access import make_key
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess


@dataclass
class Stack:
    envoy: EnvoyProcess
    ingest_port: int
    query_port: int
    database_url: str
    ingest_pid: int
    query_pid: int
    admin_key: str
    log_dir: Path  # the services' and Envoy's logs
    control_port: int = 0

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}

    @property
    def url(self) -> str:
        return self.envoy.base_url

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.envoy.options.listen_port}"


@dataclass(frozen=True)
class RestDevice:
    """A device registered over REST, with the token CreateDevice returned once."""

    device_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@pytest.fixture(scope="module")
def module_database_url(postgres_admin_url: str, migrated_template: str) -> Iterator[str]:
    name = f"sensormesh_envoy_{uuid.uuid4().hex[:12]}"
    ensure_database(postgres_admin_url, name, template=migrated_template)
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        _drop_database(postgres_admin_url, name)


@pytest.fixture(scope="module")
def stack(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("stack")
    database = {"SENSORMESH_DATABASE_URL": module_database_url}
    ingest = ServiceProcess(
        ["ingest"], {**database, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0"}, logs / "ingest.log"
    )
    query = ServiceProcess(
        ["query"], {**database, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}, logs / "query.log"
    )
    control = ServiceProcess(
        ["control"], {**database, "SENSORMESH_CONTROL_LISTEN": "127.0.0.1:0"}, logs / "control.log"
    )
    envoy = None
    try:
        ingest_port, query_port = ingest.wait_serving(), query.wait_serving()
        control_port = control.wait_serving()
        options = EnvoyOptions(
            listen_port=free_port(),
            admin_port=free_port(),
            ingest=("127.0.0.1", ingest_port),
            query=("127.0.0.1", query_port),
            control=("127.0.0.1", control_port),
            health_check_interval_s=1.0,
            # Tests of other things send requests faster than one client may; test_rate_limits.py
            # runs its own Envoy with envoy.yaml's figures.
            rate_limits=RateLimits.every(100_000),
        )
        envoy = start_envoy(options, log_dir=Path(logs))
        admin_key = asyncio.run(make_key(module_database_url, "module-admin"))
        yield Stack(
            envoy,
            ingest_port,
            query_port,
            module_database_url,
            ingest.process.pid,
            query.process.pid,
            admin_key,
            Path(logs),
            control_port,
        )
    finally:
        if envoy is not None:
            envoy.stop()
        for process in (ingest, query, control):
            process.process.terminate()
        assert [ingest.stop(), query.stop(), control.stop()] == [0, 0, 0], (
            "a service did not shut down cleanly"
        )


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of Envoy whose requests carry the admin key (a request's own authorization header wins)."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=20, headers=stack.admin_headers) as client:
        yield client


def unique_device(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def register(http: httpx.AsyncClient, prefix: str) -> RestDevice:
    """CreateDevice over REST: the device and its token."""
    device_id = unique_device(prefix)
    created = await http.post("/v1/devices", json={"deviceId": device_id})
    assert created.status_code == 200, created.text
    return RestDevice(device_id, created.json()["token"])


async def write(
    http: httpx.AsyncClient, device: RestDevice, readings: list[dict[str, Any]]
) -> dict[str, Any]:
    """WriteReadings over REST through Envoy to the real ingest service (numbered after the mark)."""
    response = await http.post(
        f"/v1/devices/{device.device_id}/readings:write", json={"readings": readings}, headers=device.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
