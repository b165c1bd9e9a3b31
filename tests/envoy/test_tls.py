"""The stack's pieces over TLS, as `sensormesh up --tls` runs them: a local CA's
certificate served by the real Envoy (ALPN h2 and http/1.1) and by the real
ingest and query processes (SENSORMESH_TLS_CERT_FILE / KEY_FILE), Envoy
verifying the services upstream, and a real agent uploading to ingest over TLS
while verifying it against the CA. gRPC and REST calls succeed over https with
the CA; plaintext, and TLS that trusts only the system's roots, are refused."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess, ListenerTls, start_envoy
from sensormesh_cli.stack.local_ca import LocalTls, ensure_local_tls
from sensormesh_cli.stack.transport import Transport
from sensormesh_core.storage.registry import create_device
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.slow, pytest.mark.timeout(180)]

AGENT = """
device_id = "{device_id}"

[uplink]
  target = "127.0.0.1:{ingest_port}"
  tls = true
  ca_file = "{ca_file}"
  batch_max_age = "100ms"
  stream_max_duration = "1s"
  backoff_initial = "50ms"
  backoff_max = "500ms"

[buffer]
  path = "{buffer}"
  commit_interval = "50ms"

[[inputs.simulated]]
  kind = "environment"
  interval = "20ms"
"""


@dataclass
class TlsStack:
    envoy: EnvoyProcess
    ingest_port: int
    query_port: int
    database_url: str
    tls: LocalTls

    @property
    def target(self) -> str:
        return f"localhost:{self.envoy.options.listen_port}"


@pytest.fixture(scope="module")
def tls_stack(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    folder = tmp_path_factory.mktemp("tls-stack")
    transport = Transport.for_stack(folder, tls=True)
    assert transport.tls is not None
    env = {"SENSORMESH_DATABASE_URL": module_database_url, **transport.service_env()}
    ingest = ServiceProcess(
        ["ingest"], {**env, "SENSORMESH_INGEST_LISTEN": "127.0.0.1:0"}, folder / "ingest.log"
    )
    query = ServiceProcess(["query"], {**env, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}, folder / "query.log")
    envoy = None
    try:
        ingest_port, query_port = ingest.wait_serving(), query.wait_serving()
        options = EnvoyOptions(
            listen_port=free_port(),
            admin_port=free_port(),
            ingest=("127.0.0.1", ingest_port),
            query=("127.0.0.1", query_port),
            health_check_interval_s=0.5,
            tls=transport.listener_tls(),
            upstream_tls=transport.upstream_tls(),
        )
        envoy = start_envoy(options, log_dir=folder)
        yield TlsStack(envoy, ingest_port, query_port, module_database_url, transport.tls)
    finally:
        if envoy is not None:
            envoy.stop()
        for process in (ingest, query):
            process.process.terminate()
        assert [ingest.stop(), query.stop()] == [0, 0], "a service did not shut down cleanly"


async def _device(url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        record, token = await create_device(conn, f"tls-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()
    return record.device_id, token


def _credentials(stack: TlsStack) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=stack.tls.ca_cert.read_bytes())


async def _committed(target: str, credentials: grpc.ChannelCredentials, device_id: str, token: str) -> int:
    async with grpc.aio.secure_channel(target, credentials) as channel:
        answer = await ingest_pb2_grpc.IngestServiceStub(channel).GetUploadOffset(
            ingest_pb2.GetUploadOffsetRequest(device_id=device_id),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    return answer.committed_sequence


async def _wait_healthy_upstreams(stack: TlsStack) -> None:
    """Envoy's TLS health checks have passed for both services (they verify the certificate too)."""
    async with httpx.AsyncClient(base_url=stack.envoy.admin_url, timeout=5) as admin:

        async def healthy() -> bool:
            return (await admin.get("/clusters")).text.count("health_flags::healthy") >= 2

        await wait_until(healthy, within=30, what="both upstreams healthy over TLS")


async def test_grpc_and_rest_work_over_https_with_the_ca_and_plaintext_is_refused(
    tls_stack: TlsStack,
) -> None:
    device_id, token = await _device(tls_stack.database_url)
    await _wait_healthy_upstreams(tls_stack)
    credentials = _credentials(tls_stack)

    # gRPC through Envoy (HTTP/2 by ALPN), Envoy to ingest over TLS.
    assert await _committed(tls_stack.target, credentials, device_id, token) == 0

    # REST through Envoy over https, HTTP/1.1 and HTTP/2.
    headers = {"authorization": f"Bearer {token}"}
    for http2 in (False, True):
        async with httpx.AsyncClient(
            base_url=f"https://{tls_stack.target}",
            verify=ssl.create_default_context(cafile=tls_stack.tls.ca_cert),
            http2=http2,
            timeout=10,
        ) as https:
            answer = await https.get(f"/v1/devices/{device_id}/uploadOffset", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert answer.json()["committedSequence"] == "0"

    # Plaintext to the TLS listener: no HTTP answer at all.
    async with httpx.AsyncClient(base_url=f"http://{tls_stack.target}", timeout=5) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"/v1/devices/{device_id}/uploadOffset", headers=headers)
    # Plaintext gRPC, to Envoy and to each service's own port.
    for port in (tls_stack.envoy.options.listen_port, tls_stack.ingest_port, tls_stack.query_port):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ingest_pb2_grpc.IngestServiceStub(channel).GetUploadOffset(
                    ingest_pb2.GetUploadOffsetRequest(device_id=device_id), timeout=5
                )
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE, port
    # TLS that trusts only the system's roots does not accept the local CA's certificate.
    async with grpc.aio.secure_channel(tls_stack.target, grpc.ssl_channel_credentials()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as untrusted:
            await ingest_pb2_grpc.IngestServiceStub(channel).GetUploadOffset(
                ingest_pb2.GetUploadOffsetRequest(device_id=device_id), timeout=5
            )
    assert untrusted.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_an_agent_uploads_to_ingest_over_tls_verifying_it_against_the_ca(
    tls_stack: TlsStack, tmp_path: Path
) -> None:
    device_id, token = await _device(tls_stack.database_url)
    config = tmp_path / "agent.toml"
    config.write_text(
        AGENT.format(
            device_id=device_id,
            ingest_port=tls_stack.ingest_port,
            ca_file=tls_stack.tls.ca_cert,
            buffer=tmp_path / "buffer.sqlite3",
        )
    )
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensormesh_cli", "agent", "--config", str(config),
            env={**os.environ, "SENSORMESH_AGENT_TOKEN": token}, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        credentials = _credentials(tls_stack)

        async def uploaded() -> bool:
            return await _committed(tls_stack.target, credentials, device_id, token) >= 20

        await wait_until(uploaded, within=60, what="the agent's readings committed over TLS")
    finally:
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await agent.wait()
    assert code == 0, log.read_text()[-3000:]


def _kubelet_secret_update(folder: Path, name: str, source: LocalTls) -> None:
    """Write the pair the way kubelet updates a Secret volume: a new timestamped folder, then
    `..data` swapped to it by a rename (tls.crt and tls.key are symlinks through `..data`)."""
    version = folder / f"..{name}"
    version.mkdir()
    (version / "tls.crt").write_bytes(source.server_cert.read_bytes())
    (version / "tls.key").write_bytes(source.server_key.read_bytes())
    (folder / "..data_tmp").symlink_to(version.name)
    (folder / "..data_tmp").rename(folder / "..data")
    for file in ("tls.crt", "tls.key"):
        if not (folder / file).is_symlink():
            (folder / file).symlink_to(f"..data/{file}")


def test_a_renewed_certificate_is_served_without_restarting_envoy(tmp_path: Path) -> None:
    """What cert-manager and kubelet do to the production overlay's Secret, on the real Envoy."""
    first, second = ensure_local_tls(tmp_path / "first"), ensure_local_tls(tmp_path / "second")
    secret = tmp_path / "secret"
    secret.mkdir()
    _kubelet_secret_update(secret, "2026_01_01", first)
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", free_port()),
        query=("127.0.0.1", free_port()),
        tls=ListenerTls(secret / "tls.crt", secret / "tls.key"),
    )
    proxy = start_envoy(options, log_dir=tmp_path)
    try:

        def served() -> bytes:
            pem = ssl.get_server_certificate(("127.0.0.1", options.listen_port), timeout=5)
            return ssl.PEM_cert_to_DER_cert(pem)

        def leaf(tls: LocalTls) -> bytes:
            """The first certificate of the chain file, DER."""
            return x509.load_pem_x509_certificate(tls.server_cert.read_bytes()).public_bytes(Encoding.DER)

        assert served() == leaf(first)
        _kubelet_secret_update(secret, "2026_03_01", second)
        deadline = time.monotonic() + 10
        while served() != leaf(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served() == leaf(second), proxy.log_tail()
    finally:
        proxy.stop()
