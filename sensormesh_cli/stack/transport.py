"""How the local stack's programs reach each other: plaintext, or TLS with the local CA.

`sensormesh up --tls` serves every port the stack opens for clients over TLS
with one server certificate from `local_ca`: Envoy's listener (REST, gRPC,
gRPC-Web), and the ingest and query services' gRPC ports, since the agents
upload to ingest directly and the printed commands call query directly.
Everything the stack itself connects with verifies that certificate against
the local CA: Envoy to the services, the agents, the direct device, the
readiness checks. Envoy's admin interface stays plaintext on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from sensormesh_cli.stack.envoy_proxy import ListenerTls, UpstreamTls
from sensormesh_cli.stack.local_ca import LocalTls, ensure_local_tls


@dataclass(frozen=True)
class Transport:
    """Plaintext (`tls` None) or TLS with the local CA's files."""

    tls: LocalTls | None = None

    @classmethod
    def for_stack(cls, data_dir: Path, *, tls: bool) -> Transport:
        """TLS: the CA and certificate under `<data_dir>/tls`, made on first use and reused after."""
        return cls(ensure_local_tls(data_dir) if tls else None)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def ca_file(self) -> Path | None:
        return None if self.tls is None else self.tls.ca_cert

    def service_env(self) -> dict[str, str]:
        """The services' settings (sensormesh_core.grpc_tls) for their gRPC ports."""
        if self.tls is None:
            return {}
        return {
            "SENSORMESH_TLS_CERT_FILE": str(self.tls.server_cert),
            "SENSORMESH_TLS_KEY_FILE": str(self.tls.server_key),
        }

    def listener_tls(self) -> ListenerTls | None:
        return None if self.tls is None else ListenerTls(self.tls.server_cert, self.tls.server_key)

    def upstream_tls(self) -> UpstreamTls | None:
        return None if self.tls is None else UpstreamTls(self.tls.ca_cert, server_name="localhost")

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials that trust only the local CA, or None for plaintext."""
        if self.tls is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.tls.ca_cert.read_bytes())

    def channel(self, target: str) -> grpc.Channel:
        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, credentials)
