"""The real Envoy binary in front of a real `sensormesh query` process (and a
fake ingest), over one migrated database, shared by the tests of a module:
Envoy's and the service's start-up are paid once. Tests use their own device
ids."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from sensormesh_core.envoy_proxy import EnvoyOptions, EnvoyProcess, start_envoy
from sensormesh_core.storage.database import with_database
from sensormesh_core.storage.embedded import ensure_database
from tests.conftest import _drop_database
from tests.envoy.fake_ingest import start_fake_ingest
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess
from tests.support.reading_writer import ReadingWriter


@dataclass
class Stack:
    envoy: EnvoyProcess
    query_port: int
    database_url: str

    @property
    def url(self) -> str:
        return self.envoy.base_url

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.envoy.options.listen_port}"


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
    query = ServiceProcess(
        ["query"],
        {"SENSORMESH_DATABASE_URL": module_database_url, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"},
        logs / "query.log",
    )
    ingest, ingest_port = start_fake_ingest()
    envoy = None
    try:
        query_port = query.wait_serving()
        options = EnvoyOptions(
            listen_port=free_port(),
            admin_port=free_port(),
            ingest=("127.0.0.1", ingest_port),
            query=("127.0.0.1", query_port),
            health_check_interval_s=1.0,
        )
        envoy = start_envoy(options, log_dir=Path(logs))
        yield Stack(envoy, query_port, module_database_url)
    finally:
        if envoy is not None:
            envoy.stop()
        ingest.stop(None)
        query.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        yield client


@pytest.fixture
async def writer(stack: Stack) -> AsyncIterator[ReadingWriter]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        yield ReadingWriter(conn)
    finally:
        await conn.close()


def unique_device(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
