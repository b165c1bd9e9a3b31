"""What the operator's commands (`sensormesh devices`, `keys`, `audit`, `watch`) share: where
the server is, the channel to it, the operator's API key, and how errors read.

The key comes from SENSORMESH_API_KEY, or else from the file SENSORMESH_API_KEY_FILE names
(by default `.sensormesh/admin.key`, which `sensormesh up` writes on its first start), and is
sent as `authorization: Bearer <key>` with every call.

They speak gRPC to DeviceService and QueryService: through Envoy (the
default: the front door of `sensormesh up` and of a cluster) or straight to
a query service. Flags override the settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
from pydantic import Field, SecretStr

from sensormesh_cli.bearer import aio_interceptors, with_key
from sensormesh_core.config import SensormeshSettings


class ClientSettings(SensormeshSettings):
    """The server the operator's commands call."""

    server: str = Field(
        default="127.0.0.1:8080",
        description="host:port of Envoy or a query service, for `sensormesh devices` and `sensormesh watch`.",
    )
    server_tls: bool = Field(
        default=False, description="Use TLS to the server (the system's roots unless a CA file is given)."
    )
    server_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle for the server's TLS certificate (implies TLS)."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Operator API key for the CLI's calls (wins over api_key_file)."
    )
    api_key_file: Path = Field(
        default=Path(".sensormesh/admin.key"),
        description="File holding the CLI's API key when api_key is unset (`sensormesh up` writes this one).",
    )

    def key(self) -> str | None:
        """The API key to send: api_key, else the file's first line, else None (calls will be refused)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value().strip() or None
        try:
            text = self.api_key_file.read_text().strip()
        except OSError:
            return None
        return text.splitlines()[0].strip() if text else None


def client_arguments() -> argparse.ArgumentParser:
    """The connection flags, as a parent parser for each subcommand."""
    parser = argparse.ArgumentParser(add_help=False)
    add_client_arguments(parser)
    return parser


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the connection flags to `parser` (a command without subcommands)."""
    group = parser.add_argument_group("server")
    group.add_argument(
        "--server", help="host:port of Envoy or a query service (SENSORMESH_SERVER, 127.0.0.1:8080)"
    )
    group.add_argument("--tls", action="store_true", default=None, help="use TLS (SENSORMESH_SERVER_TLS)")
    group.add_argument(
        "--ca-file", type=Path, help="PEM CA bundle, implies --tls (SENSORMESH_SERVER_CA_FILE)"
    )
    group.add_argument(
        "--api-key-file",
        type=Path,
        help="file with the operator API key (SENSORMESH_API_KEY_FILE, .sensormesh/admin.key; "
        "SENSORMESH_API_KEY wins)",
    )


def settings_from(args: argparse.Namespace) -> ClientSettings:
    """The settings with the flags given on the command line applied."""
    settings = ClientSettings()
    updates = {
        "server": getattr(args, "server", None),
        "server_tls": getattr(args, "tls", None),
        "server_ca_file": getattr(args, "ca_file", None),
        "api_key_file": getattr(args, "api_key_file", None),
    }
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})


def _credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    if not settings.server_tls and settings.server_ca_file is None:
        return None
    roots = settings.server_ca_file.read_bytes() if settings.server_ca_file is not None else None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def open_channel(settings: ClientSettings) -> grpc.Channel:
    """A blocking channel to the server."""
    credentials = _credentials(settings)
    if credentials is None:
        channel = grpc.insecure_channel(settings.server)
    else:
        channel = grpc.secure_channel(settings.server, credentials)
    return with_key(channel, settings.key())


def open_aio_channel(settings: ClientSettings) -> grpc.aio.Channel:
    """The asyncio twin of `open_channel` (live feeds)."""
    credentials = _credentials(settings)
    interceptors = aio_interceptors(settings.key())
    if credentials is None:
        return grpc.aio.insecure_channel(settings.server, interceptors=interceptors)
    return grpc.aio.secure_channel(settings.server, credentials, interceptors=interceptors)


def describe_error(error: grpc.RpcError, server: str) -> str:
    """One readable message: the status, the server's words, and each field violation."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach {server}: {error.details()} (is the stack running? see --server)"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"{code.name}: {error.details()}\n  give an operator API key: SENSORMESH_API_KEY, "
            "or a file with --api-key-file / SENSORMESH_API_KEY_FILE (`sensormesh up` writes .sensormesh/admin.key)"
        )
    lines = [f"{code.name}: {error.details()}"]
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            lines += [f"  {v.field}: {v.description}" for v in bad_request.field_violations]
    return "\n".join(lines)
