"""The services' port TLS settings: both files or neither, and a TLS port that only TLS reaches."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from sensormesh_cli.stack.local_ca import ensure_local_tls
from sensormesh_core.grpc_tls import ServerTlsSettings, add_port


def test_a_certificate_without_its_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENSORMESH_TLS_CERT_FILE", str(tmp_path / "server.pem"))
    monkeypatch.delenv("SENSORMESH_TLS_KEY_FILE", raising=False)
    with pytest.raises(ValidationError, match="SENSORMESH_TLS_KEY_FILE"):
        ServerTlsSettings()


def test_unset_is_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENSORMESH_TLS_CERT_FILE", raising=False)
    monkeypatch.delenv("SENSORMESH_TLS_KEY_FILE", raising=False)
    assert not ServerTlsSettings().enabled


async def test_a_port_bound_with_a_certificate_answers_tls_only(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = add_port(
        server, "127.0.0.1:0", ServerTlsSettings(tls_cert_file=tls.server_cert, tls_key_file=tls.server_key)
    )
    await server.start()
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
