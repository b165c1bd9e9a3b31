"""The copy-paste commands `sensormesh up` prints, and the README shows.

One function renders them for given addresses and paths, so the commands on
the terminal, the README's (rendered with the defaults by `make readme`) and
the ones the end-to-end test runs are the same text.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from sensormesh_cli.stack.settings import split_host_port

WATCHED = "greenhouse-pi"  # 1 s environment readings: a live feed a person can follow
CAMERA = "greenhouse-cam"  # WATCHED's simulated camera, a frame every 5 s
DOWNSAMPLED = "vibration-pi"  # 100 Hz: what downsampling is for
DIRECT = "soil-node"
WIRELESS = "ble:sim-thermometer"  # greenhouse-pi's battery BLE sensor (stack/demo.py)


@dataclass(frozen=True)
class Endpoints:
    """Where the stack listens, as host:port."""

    http: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:9901"
    ingest: str = "127.0.0.1:50051"
    query: str = "127.0.0.1:50052"
    control: str = "127.0.0.1:50053"
    console: str = "127.0.0.1:50054"  # the web console's files, behind Envoy on `http`


@dataclass(frozen=True)
class Paths:
    """Paths the commands name, as the user should type them."""

    buf: str = ".venv/bin/buf"
    sensormesh: str = ".venv/bin/sensormesh"
    descriptor: str = "gen/sensormesh/descriptor_set.binpb"
    data_dir: str = ".sensormesh"
    ca_file: str | None = None  # `sensormesh up --tls`: the local CA, and https everywhere

    @property
    def scheme(self) -> str:
        return "http" if self.ca_file is None else "https"


@dataclass(frozen=True)
class Example:
    """A titled command; `streams` when it runs until interrupted."""

    title: str
    command: str
    streams: bool = False


def reachable(address: str) -> str:
    """host:port a client on this machine can use (a wildcard bind is reached on loopback)."""
    host, port = split_host_port(address)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - mapping a wildcard, not binding one
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def display_path(path: Path, cwd: Path | None = None) -> str:
    """`path` relative to the working directory when inside it, else absolute."""
    cwd = (cwd or Path.cwd()).resolve()
    absolute = path.resolve() if path.is_absolute() else (cwd / path).resolve()
    try:
        return str(absolute.relative_to(cwd))
    except ValueError:
        return str(absolute)


def admin_header(paths: Paths) -> str:
    """The curl / buf curl flag that sends the stack's admin key."""
    return f'-H "authorization: Bearer $(cat {shlex.quote(f"{paths.data_dir}/admin.key")})"'


def rest_examples(endpoints: Endpoints, paths: Paths) -> list[Example]:
    base = f"{paths.scheme}://{reachable(endpoints.http)}"
    curl = "curl" if paths.ca_file is None else f"curl --cacert {shlex.quote(paths.ca_file)}"
    key = admin_header(paths)
    token = shlex.quote(f"{paths.data_dir}/devices/{DIRECT}.token")
    reading = (
        '{"readings": [{"sensor": "by-hand", "sampleTime": "\'"$(date -u +%FT%TZ)"\'", '
        '"measurement": {"name": "soil_moisture", "value": 41.5, "unit": "%"}}]}'
    )
    return [
        Example("devices (with the admin key; without one: 401)", f"{curl} -s {key} {base}/v1/devices"),
        Example("one device: sensors, series, input states", f"{curl} -s {key} {base}/v1/devices/{WATCHED}"),
        Example(
            "latest value of every series", f"{curl} -s {key} {base}/v1/devices/{WATCHED}/readings:latest"
        ),
        Example(
            f"battery and signal strength of {WATCHED}'s BLE sensor (its latest link health)",
            f"{curl} -s {key} '{base}/v1/devices/{WATCHED}/readings:latest?sensors={WIRELESS}"
            "&quantities=battery_level&quantities=signal_strength'",
        ),
        Example(
            "the fleet by lowest battery: each device's lowestBatteryLevel and weakestSignalStrength",
            f"{curl} -s {key} '{base}/v1/devices?order_by=lowest_battery_level.value'",
        ),
        Example(
            "the last hour of one axis at 100 Hz, downsampled to 10 s buckets (min, max, mean, count)",
            f"{curl} -s {key} '{base}/v1/devices/{DOWNSAMPLED}/readings?quantities=acceleration_z&interval=10s'",
        ),
        Example(
            "the same axis by the minute as columns (per series an array of times and one per field), "
            "compressed on the wire (--compressed: brotli or gzip, decoded by curl)",
            f"{curl} -s --compressed {key} '{base}/v1/devices/{DOWNSAMPLED}/readings?quantities=acceleration_z"
            "&interval=60s&view=READINGS_VIEW_COLUMNS'",
        ),
        Example(
            "live feed: a JSON array that grows as readings commit (Ctrl-C ends it)",
            f"{curl} -sN {key} {base}/v1/devices/{WATCHED}/readings:watch",
            streams=True,
        ),
        Example(
            f"{CAMERA}'s latest frame, the JPEG itself (open latest.jpg; {base}/v1/devices/{WATCHED}/frames "
            "lists them)",
            f"{curl} -s {key} -o latest.jpg '{base}/v1/devices/{WATCHED}/frames:latest?camera={CAMERA}'",
        ),
        Example(
            "a read-only key for a dashboard, shown once",
            f'{curl} -s {key} -d \'{{"apiKey": {{"name": "dashboard", "role": "ROLE_VIEWER"}}}}\' '
            f"{base}/v1/apiKeys",
        ),
        Example(
            f"a command to {WATCHED}'s agent: stored, offered, run once; read it back by its commandId",
            f'{curl} -s {key} -d \'{{"name": "status"}}\' {base}/v1/devices/{WATCHED}/commands',
        ),
        Example(
            f"{WATCHED}'s commands, newest first, with their states and results",
            f"{curl} -s {key} {base}/v1/devices/{WATCHED}/commands",
        ),
        Example(
            "alerts, newest first (a demo rule raises one on the greenhouse's heat spikes within a minute)",
            f"{curl} -s {key} '{base}/v1/alerts?states=ALERT_STATE_ACTIVE_UNACK&states=ALERT_STATE_CLEARED_UNACK'",
        ),
        Example(
            f"write a reading as {DIRECT}, a direct device, with its token",
            f'{curl} -s -H "authorization: Bearer $(cat {token})" '
            f"-d '{reading}' {base}/v1/devices/{DIRECT}/readings:write",
        ),
    ]


def grpc_examples(endpoints: Endpoints, paths: Paths) -> list[Example]:
    buf = f"{shlex.quote(paths.buf)} curl --protocol grpc"
    buf += " --http2-prior-knowledge" if paths.ca_file is None else f" --cacert {shlex.quote(paths.ca_file)}"
    buf += f" {admin_header(paths)}"
    envoy = f"{paths.scheme}://{reachable(endpoints.http)}"
    query = f"{paths.scheme}://{reachable(endpoints.query)}"
    ingest = f"{paths.scheme}://{reachable(endpoints.ingest)}"
    return [
        Example(
            "through Envoy, schema from the descriptor set",
            f'{buf} --schema {shlex.quote(paths.descriptor)} -d \'{{"deviceId": "{WATCHED}"}}\' '
            f"{envoy}/sensormesh.v1.QueryService/GetLatestReadings",
        ),
        Example("the query service's methods, by server reflection", f"{buf} --list-methods {query}"),
        Example(
            "a call straight to the query service, schema by reflection",
            f"{buf} -d '{{\"pageSize\": 10}}' {query}/sensormesh.v1.DeviceService/ListDevices",
        ),
        Example(
            "an hour by the minute in columns, straight to the query service",
            f'{buf} -d \'{{"deviceId": "{DOWNSAMPLED}", "quantities": ["acceleration_z"], "interval": "60s", '
            f'"view": "READINGS_VIEW_COLUMNS"}}\' {query}/sensormesh.v1.QueryService/ListReadings',
        ),
        Example(
            "the ingest service's health",
            f'{buf} -d \'{{"service": "sensormesh.v1.IngestService"}}\' {ingest}/grpc.health.v1.Health/Check',
        ),
    ]


def cli_examples(endpoints: Endpoints, paths: Paths) -> list[Example]:
    sensormesh = shlex.quote(paths.sensormesh)
    server = "" if endpoints.http == Endpoints.http else f" --server {reachable(endpoints.http)}"
    if paths.ca_file is not None:
        server += f" --ca-file {shlex.quote(paths.ca_file)}"
    if (
        paths.data_dir != Paths.data_dir
    ):  # the CLI reads .sensormesh/admin.key by itself, not another folder's
        server += f" --api-key-file {shlex.quote(f'{paths.data_dir}/admin.key')}"
    return [
        Example("a live view of a device's readings", f"{sensormesh} watch {WATCHED}{server}", streams=True),
        Example("the registry (the CLI reads the admin key file)", f"{sensormesh} devices list{server}"),
        Example(
            "devices by lowest battery, with their weakest signal",
            f"{sensormesh} devices list --order-by battery{server}",
        ),
        Example(
            "ping the greenhouse agent and wait for its answer",
            f"{sensormesh} commands send {WATCHED} ping --wait{server}",
        ),
        Example("alerts (acknowledge one: alerts ack ID)", f"{sensormesh} alerts list{server}"),
        Example("operator API keys", f"{sensormesh} keys list{server}"),
        Example("who changed what", f"{sensormesh} audit{server}"),
    ]


def default_paths(data_dir: Path, cwd: Path | None = None, *, tls: bool = False) -> Paths:
    """Paths of this installation: the tools next to this interpreter, the installed descriptor set
    (and with `tls` the local CA of `sensormesh up --tls`)."""
    from sensormesh_cli.stack.envoy_proxy import default_descriptor_path

    bin_dir = Path(os.path.dirname(os.path.abspath(sys.executable)))  # the venv's bin, unresolved
    return Paths(
        buf=display_path(bin_dir / "buf", cwd),
        sensormesh=display_path(bin_dir / "sensormesh", cwd),
        descriptor=display_path(default_descriptor_path(), cwd),
        data_dir=display_path(data_dir, cwd),
        ca_file=display_path(data_dir / "tls" / "ca.pem", cwd) if tls else None,
    )


def render(endpoints: Endpoints, paths: Paths, *, indent: str = "    ") -> str:
    """The examples as text: a `#` line with the title, the command below it."""
    sections = [
        ("REST through Envoy", rest_examples(endpoints, paths)),
        ("gRPC (buf curl)", grpc_examples(endpoints, paths)),
        ("command line", cli_examples(endpoints, paths)),
    ]
    lines: list[str] = []
    for heading, examples in sections:
        lines.append(f"{indent}## {heading}")
        for example in examples:
            lines += [f"{indent}# {example.title}", f"{indent}{example.command}"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
