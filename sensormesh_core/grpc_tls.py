"""TLS for the services' gRPC port: on when a certificate and its key are configured.

Both services bind their port through `add_port`, so one pair of settings
(`SENSORMESH_TLS_CERT_FILE`, `SENSORMESH_TLS_KEY_FILE`) decides for both:
unset, the port is plaintext (loopback, or inside a cluster where Envoy
terminates TLS at the edge); set, it serves TLS with that certificate (PEM,
the chain's intermediates after the leaf). Setting one without the other is
an error at start-up, not a silent plaintext port. The files are read once,
when the port is bound: a renewed certificate takes effect at the next start.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from pydantic import Field, model_validator

from sensormesh_core.config import SensormeshSettings


class ServerTlsSettings(SensormeshSettings):
    """The certificate a service's gRPC port serves; both unset: plaintext."""

    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain the gRPC port serves (with tls_key_file); unset: plaintext.",
    )
    tls_key_file: Path | None = Field(
        default=None,
        description="PEM private key of tls_cert_file (keep it mode 0600).",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> ServerTlsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both SENSORMESH_TLS_CERT_FILE and SENSORMESH_TLS_KEY_FILE, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.tls_cert_file is not None


def server_credentials(settings: ServerTlsSettings) -> grpc.ServerCredentials | None:
    """The credentials for `settings`' certificate, or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key, chain = settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


def add_port(server: grpc.aio.Server, address: str, settings: ServerTlsSettings | None = None) -> int:
    """Bind `address` with TLS when configured (settings from the environment by default); the bound port."""
    credentials = server_credentials(settings if settings is not None else ServerTlsSettings())
    if credentials is None:
        port: int = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    return port
