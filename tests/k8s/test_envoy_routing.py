"""The cluster's Envoy config, run by the real Envoy: requests reach the right pods.

Only the addresses are changed for this machine: the listener and admin ports
become free ones, and the `ingest`, `query` and `control` clusters get the
addresses of stand-in gRPC servers on loopback (what the headless Services' DNS
names resolve to in a cluster: one address per ready pod; here one ingest, two
query and two control "pods"). The stand-ins record every call and serve grpc.health.v1 like
the real services. Everything else (filters, transcoder, routes, health
checks, balancing, timeouts) is the file that ships in the ConfigMap.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health, health_pb2
from grpc_health.v1 import health_pb2_grpc as health_grpc
from sensormesh.v1 import command_delivery_pb2, command_pb2, device_pb2, ingest_pb2, query_pb2

from sensormesh_cli.stack.envoy_proxy import envoy_binary
from tests.k8s.test_envoy_config import CONFIG, DESCRIPTOR, transcoder_descriptor_path

DEADLINE_S = 20.0
STREAMING: dict[str, tuple[bool, bool]] = {
    f"/{f.package}.{s.name}/{m.name}": (m.client_streaming, m.server_streaming)
    for f in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes()).file
    for s in f.service
    for m in s.method
}


@dataclass
class StandIn:
    """A gRPC server that answers any sensormesh method with an empty message."""

    name: str
    service: str
    calls: list[str] = field(default_factory=list)
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    port: int = 0

    def handler(self, method: str) -> grpc.RpcMethodHandler | None:
        if method not in STREAMING:
            return None
        self.calls.append(method)
        client_streaming, server_streaming = STREAMING[method]

        async def unary(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
            return b""

        async def consume(requests: AsyncIterator[bytes], _context: grpc.aio.ServicerContext) -> bytes:
            async for _ in requests:
                pass
            return b""

        async def one_then_end(_request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            yield b""

        async def consume_then_one(
            requests: AsyncIterator[bytes], _context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for _ in requests:
                pass
            yield b""

        if client_streaming and server_streaming:
            return grpc.stream_stream_rpc_method_handler(consume_then_one)
        if client_streaming:
            return grpc.stream_unary_rpc_method_handler(consume)
        if server_streaming:
            return grpc.unary_stream_rpc_method_handler(one_then_end)
        return grpc.unary_unary_rpc_method_handler(unary)


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, stand_in: StandIn) -> None:
        self._stand_in = stand_in

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._stand_in.handler(handler_call_details.method)


async def _start(stand_in: StandIn) -> StandIn:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((_Generic(stand_in),))
    stand_in.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set(stand_in.service, health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stand_in.server = server
    stand_in.health = servicer
    return stand_in


def _local_config(tmp_path: Path, ports: dict[str, list[int]]) -> Path:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    for cluster in config["static_resources"]["clusters"]:
        locality = cluster["load_assignment"]["endpoints"][0]
        (endpoint,) = locality["lb_endpoints"]
        service = endpoint["endpoint"]["address"]["socket_address"]["address"]
        locality["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
            # The web console has no stand-in here: a port nothing listens on (1, tcpmux).
            for port in ports.get(service, [1])
        ]
    text = yaml.safe_dump(config).replace(transcoder_descriptor_path(config), str(DESCRIPTOR))
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    return path


def _wait_for(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@dataclass
class RunningEnvoy:
    port: int
    admin: str
    log: Path


@pytest.fixture
def envoy_process(tmp_path: Path) -> Iterator[Any]:
    """A function that starts Envoy for given upstream ports; stopped at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(ports: dict[str, list[int]]) -> RunningEnvoy:
        admin_file = tmp_path / "admin-address"
        admin_file.unlink(missing_ok=True)  # Envoy writes it once its admin listens
        log = tmp_path / "envoy.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    envoy_binary(),
                    "-c",
                    str(_local_config(tmp_path, ports)),
                    "--disable-hot-restart",
                    "--admin-address-path",
                    str(admin_file),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        admin = _wait_for(
            lambda: admin_file.exists() and admin_file.read_text().strip(), "Envoy's admin address"
        )

        def listener_port() -> int | None:
            if process.poll() is not None:
                raise AssertionError(f"Envoy exited:\n{log.read_text()}")
            try:
                _, body = _get(f"http://{admin}/listeners?format=json")
            except OSError:
                return None
            states = json.loads(body)["listener_statuses"]
            return int(states[0]["local_address"]["socket_address"]["port_value"]) or None

        port = _wait_for(listener_port, "Envoy's listener")
        return RunningEnvoy(port, admin, log)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def stand_ins() -> AsyncIterator[dict[str, list[StandIn]]]:
    """One ingest pod, two query pods and two control pods."""
    servers = {
        "ingest": [await _start(StandIn("ingest-0", "sensormesh.v1.IngestService"))],
        "query": [await _start(StandIn(f"query-{i}", "sensormesh.v1.QueryService")) for i in range(2)],
        "control": [await _start(StandIn(f"control-{i}", "sensormesh.v1.CommandService")) for i in range(2)],
    }
    yield servers
    for group in servers.values():
        for stand_in in group:
            assert stand_in.server is not None
            await stand_in.server.stop(None)


def _host_health(running: RunningEnvoy) -> dict[str, list[str]]:
    """cluster -> the health flags of each of its hosts, from Envoy's admin."""
    _, body = _get(f"http://{running.admin}/clusters")
    found: dict[str, list[str]] = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] == "health_flags":
            found.setdefault(parts[0], []).append(parts[3])
    return found


async def _start_envoy(envoy_process: Any, stand_ins: dict[str, list[StandIn]]) -> RunningEnvoy:
    ports = {name: [s.port for s in group] for name, group in stand_ins.items()}
    running: RunningEnvoy = await asyncio.to_thread(envoy_process, ports)

    def all_healthy() -> bool:
        health_flags = _host_health(running)
        return all(health_flags.get(name) == ["healthy"] * len(group) for name, group in stand_ins.items())

    await asyncio.to_thread(_wait_for, all_healthy, "every host to pass its gRPC health check")
    return running


def _calls(group: list[StandIn]) -> list[str]:
    return sorted(call for stand_in in group for call in stand_in.calls)


async def test_grpc_rest_and_streams_reach_the_service_that_owns_them(
    envoy_process: Any, stand_ins: dict[str, list[StandIn]]
) -> None:
    running = await _start_envoy(envoy_process, stand_ins)
    base = f"http://127.0.0.1:{running.port}"

    status, _ = await asyncio.to_thread(_get, f"{base}/healthz")
    assert status == 200

    # REST through the transcoder: the path picks the method, the method picks the pods.
    rest_paths = (
        "/v1/devices/pi-1/uploadOffset",
        "/v1/devices/pi-1/readings:latest",
        "/v1/devices/pi-1",
        "/v1/devices/pi-1/commands",
        "/v1/devices/pi-1/commands/7",
    )
    for path in rest_paths:
        status, body = await asyncio.to_thread(_get, base + path)
        assert status == 200, f"{path}: {body}"

    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        get_device = channel.unary_unary(
            "/sensormesh.v1.DeviceService/GetDevice",
            request_serializer=device_pb2.GetDeviceRequest.SerializeToString,
            response_deserializer=device_pb2.GetDeviceResponse.FromString,
        )
        await get_device(device_pb2.GetDeviceRequest(device_id="pi-1"), timeout=5)
        upload = channel.stream_unary(
            "/sensormesh.v1.IngestService/UploadReadings",
            request_serializer=ingest_pb2.UploadReadingsRequest.SerializeToString,
            response_deserializer=ingest_pb2.UploadReadingsResponse.FromString,
        )
        batches = [ingest_pb2.UploadReadingsRequest(device_id="pi-1", first_sequence=1, last_sequence=1)] * 3
        await upload(iter(batches), timeout=5)
        watch = channel.unary_stream(
            "/sensormesh.v1.QueryService/WatchReadings",
            request_serializer=query_pb2.WatchReadingsRequest.SerializeToString,
            response_deserializer=query_pb2.WatchReadingsResponse.FromString,
        )
        received = [m async for m in watch(query_pb2.WatchReadingsRequest(device_id="pi-1"), timeout=5)]
        assert len(received) == 1
        send = channel.unary_unary(
            "/sensormesh.v1.CommandService/SendCommand",
            request_serializer=command_pb2.SendCommandRequest.SerializeToString,
            response_deserializer=command_pb2.SendCommandResponse.FromString,
        )
        await send(command_pb2.SendCommandRequest(device_id="pi-1", name="reboot"), timeout=5)
        watch_commands = channel.unary_stream(
            "/sensormesh.v1.CommandService/WatchCommands",
            request_serializer=command_pb2.WatchCommandsRequest.SerializeToString,
            response_deserializer=command_pb2.WatchCommandsResponse.FromString,
        )
        request = command_pb2.WatchCommandsRequest(device_id="pi-1")
        assert len([m async for m in watch_commands(request, timeout=5)]) == 1
        # The device's side: its command channel, a bidirectional stream, reaches ingest.
        connect = channel.stream_stream(
            "/sensormesh.v1.CommandDeliveryService/ConnectCommands",
            request_serializer=command_delivery_pb2.ConnectCommandsRequest.SerializeToString,
            response_deserializer=command_delivery_pb2.ConnectCommandsResponse.FromString,
        )
        hello = [command_delivery_pb2.ConnectCommandsRequest()]
        assert len([m async for m in connect(iter(hello), timeout=5)]) == 1

    assert _calls(stand_ins["ingest"]) == [
        "/sensormesh.v1.CommandDeliveryService/ConnectCommands",
        "/sensormesh.v1.IngestService/GetUploadOffset",
        "/sensormesh.v1.IngestService/UploadReadings",
    ]
    assert _calls(stand_ins["query"]) == [
        "/sensormesh.v1.DeviceService/GetDevice",
        "/sensormesh.v1.DeviceService/GetDevice",
        "/sensormesh.v1.QueryService/GetLatestReadings",
        "/sensormesh.v1.QueryService/WatchReadings",
    ]
    assert _calls(stand_ins["control"]) == [
        "/sensormesh.v1.CommandService/GetCommand",
        "/sensormesh.v1.CommandService/ListCommands",
        "/sensormesh.v1.CommandService/SendCommand",
        "/sensormesh.v1.CommandService/WatchCommands",
    ]


@pytest.mark.parametrize(
    ("cluster", "method", "request_bytes"),
    [
        (
            "query",
            "/sensormesh.v1.QueryService/WatchReadings",
            query_pb2.WatchReadingsRequest(device_id="pi-1").SerializeToString(),
        ),
        (
            "control",
            "/sensormesh.v1.CommandService/WatchCommands",
            command_pb2.WatchCommandsRequest(device_id="pi-1").SerializeToString(),
        ),
    ],
)
async def test_streams_of_one_connection_spread_over_pods_and_skip_a_pod_not_serving(
    envoy_process: Any, stand_ins: dict[str, list[StandIn]], cluster: str, method: str, request_bytes: bytes
) -> None:
    """The point of the headless Services: Envoy picks a pod per stream, not per
    connection, and follows the same health the readiness probes read."""
    running = await _start_envoy(envoy_process, stand_ins)
    first, second = stand_ins[cluster]

    async def watch_many(count: int) -> None:
        # One channel: one HTTP/2 connection to Envoy carries every stream.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            watch = channel.unary_stream(method)
            for _ in range(count):
                assert len([m async for m in watch(request_bytes, timeout=5)]) == 1

    await watch_many(20)
    # Both pods got streams (all 20 on one pod by chance: p = 2 x 2^-20).
    assert first.calls and second.calls, (len(first.calls), len(second.calls))

    assert first.health is not None
    await first.health.set(first.service, health_pb2.HealthCheckResponse.NOT_SERVING)

    def first_out() -> bool:
        return sorted(_host_health(running).get(cluster, [])) == ["/failed_active_hc", "healthy"]

    await asyncio.to_thread(_wait_for, first_out, "the NOT_SERVING pod to fail its health check")
    before = len(first.calls)
    await watch_many(10)
    assert len(first.calls) == before
