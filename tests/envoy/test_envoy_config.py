"""envoy/envoy.yaml and its renderer, checked with the real Envoy binary."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import (
    CONFIG_PATH,
    Bucket,
    EnvoyOptions,
    ListenerTls,
    RateLimits,
    UpstreamTls,
    default_descriptor_path,
    envoy_binary,
    listener_secret,
    load_base_config,
    render_config,
    start_envoy,
)
from tests.support.ports import free_port

TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def _filters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {f["name"]: f["typed_config"] for f in manager["http_filters"]}


def test_envoy_yaml_is_valid_as_committed() -> None:
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(CONFIG_PATH), "--disable-hot-restart"],
        cwd=CONFIG_PATH.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_transcoder_serves_every_service_with_a_rest_mapping() -> None:
    """Every service one of whose RPCs has a google.api.http rule; the devices' command channel (a
    bidirectional stream, which REST cannot carry) has none and is routed as gRPC only."""
    from google.api import annotations_pb2

    descriptors = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_path().read_bytes())
    services = {
        f"{f.package}.{s.name}"
        for f in descriptors.file
        if f.package == "sensormesh.v1"
        for s in f.service
        if any(m.options.HasExtension(annotations_pb2.http) for m in s.method)
    }
    assert "sensormesh.v1.CommandService" in services
    assert "sensormesh.v1.CommandDeliveryService" not in services
    transcoder = _filters(load_base_config())[TRANSCODER]
    assert set(transcoder["services"]) == services
    assert transcoder["convert_grpc_status"] is True
    assert "google/rpc/error_details.proto" in {f.name for f in descriptors.file}


def test_every_streaming_rpc_has_a_route_that_disables_compression() -> None:
    """A compressor holds bytes until its block fills: a live feed through it would arrive late
    and in lumps. Every stream (either direction) has its own route exempting it from every
    compressor filter, so a new streaming RPC without one fails here."""
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_path().read_bytes())
    streams = {
        f"/{f.package}.{s.name}/{m.name}"
        for f in descriptors.file
        if f.package == "sensormesh.v1"
        for s in f.service
        for m in s.method
        if m.client_streaming or m.server_streaming
    }
    assert "/sensormesh.v1.QueryService/WatchReadings" in streams
    config = load_base_config()
    compressors = {
        name
        for name, typed in _filters(config).items()
        if typed["@type"].endswith(".compressor.v3.Compressor")
    }
    assert compressors == {"sensormesh.compress.brotli", "sensormesh.compress.gzip"}
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = manager["route_config"]["virtual_hosts"]
    exempt = {
        route["match"]["path"]
        for route in host["routes"]
        if "path" in route["match"]
        and all(route.get("typed_per_filter_config", {}).get(c, {}).get("disabled") for c in compressors)
    }
    assert streams <= exempt, streams - exempt


def test_rendering_changes_only_addresses_paths_and_limits(tmp_path: Path) -> None:
    base = load_base_config()
    options = EnvoyOptions(
        listen_address="0.0.0.0",
        listen_port=18080,
        admin_port=19901,
        ingest=("ingest.sensormesh.svc", 50051),
        query=("query.sensormesh.svc", 50052),
        control=("control.sensormesh.svc", 50053),
        console=("console.sensormesh.svc", 50054),
        descriptor_path=tmp_path / "d.binpb",
        rate_limits=RateLimits(writes=Bucket(per_second=7, burst=9), anonymous=Bucket(1, 2)),
    )
    rendered = render_config(options, base)
    assert base == load_base_config(), "rendering must not change its input"
    assert rendered["static_resources"]["listeners"][0]["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": 18080,
    }
    assert rendered["admin"]["address"]["socket_address"]["port_value"] == 19901
    hosts = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]
        for c in rendered["static_resources"]["clusters"]
    }
    assert hosts == {
        "ingest": {"address": "ingest.sensormesh.svc", "port_value": 50051},
        "query": {"address": "query.sensormesh.svc", "port_value": 50052},
        "control": {"address": "control.sensormesh.svc", "port_value": 50053},
        "console": {"address": "console.sensormesh.svc", "port_value": 50054},
    }
    assert _filters(rendered)[TRANSCODER]["proto_descriptor"] == str((tmp_path / "d.binpb").resolve())
    buckets = _buckets(rendered)
    assert buckets["family=writes,credential="] == {
        "max_tokens": 9,
        "tokens_per_fill": 7,
        "fill_interval": "1s",
    }
    assert buckets["authorization=absent"] == {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1s"}

    # Undo exactly those changes: what is left is envoy.yaml unchanged.
    undone = copy.deepcopy(rendered)
    undone["admin"] = base["admin"]
    undone["static_resources"]["listeners"][0]["address"] = base["static_resources"]["listeners"][0][
        "address"
    ]
    for mine, theirs in zip(
        undone["static_resources"]["clusters"], base["static_resources"]["clusters"], strict=True
    ):
        mine["load_assignment"] = theirs["load_assignment"]
    undone_filters = _filters(undone)
    undone_filters[TRANSCODER]["proto_descriptor"] = _filters(base)[TRANSCODER]["proto_descriptor"]
    for name in ("sensormesh.rate_limit.credential", "sensormesh.rate_limit.anonymous"):
        undone_filters[name]["descriptors"] = _filters(base)[name]["descriptors"]
    assert undone == base


def _buckets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every rate limit bucket by its descriptor ("family=writes,credential=")."""
    found = {}
    for name, typed in _filters(config).items():
        if name.startswith("sensormesh.rate_limit."):
            for descriptor in typed["descriptors"]:
                key = ",".join(f"{e['key']}={e['value']}" for e in descriptor["entries"])
                found[key] = descriptor["token_bucket"]
    return found


def test_the_documented_rate_limit_defaults_are_the_configured_ones() -> None:
    """README "Rate limits" states these figures; a change here is a change there."""
    per_second_and_burst = {
        key: (bucket["tokens_per_fill"], bucket["max_tokens"])
        for key, bucket in _buckets(load_base_config()).items()
    }
    assert {
        key: bucket["fill_interval"] for key, bucket in _buckets(load_base_config()).items()
    } == dict.fromkeys(per_second_and_burst, "1s")
    assert per_second_and_burst == {
        "remote_address=": (1000, 2000),
        "authorization=absent": (50, 100),
        "family=writes,credential=": (50, 100),
        "family=reads,credential=": (100, 200),
        "family=commands,credential=": (10, 20),
    }
    readme = (CONFIG_PATH.parents[1] / "README.md").read_text()
    for row in (
        "| per source address | every request | 1,000 | 2,000 |",
        "| anonymous | requests without `authorization`, all together | 50 | 100 |",
        "| writes | `IngestService`, per credential | 50 | 100 |",
        "| reads | `DeviceService`, `QueryService`, per credential | 100 | 200 |",
        "| commands | `CommandService` (to come), per credential | 10 | 20 |",
    ):
        assert row in readme, row


def test_a_listener_certificate_adds_tls_with_alpn_for_grpc_and_http1(tmp_path: Path) -> None:
    tls = ListenerTls(tmp_path / "server.pem", tmp_path / "server.key", sds_file=tmp_path / "sds.json")
    rendered = render_config(EnvoyOptions(tls=tls, upstream_tls=UpstreamTls(tmp_path / "ca.pem")))
    chain = rendered["static_resources"]["listeners"][0]["filter_chains"][0]
    context = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    (sds,) = context["tls_certificate_sds_secret_configs"]
    assert sds["sds_config"]["path_config_source"]["path"] == str(tmp_path / "sds.json")
    (secret,) = listener_secret(tls)["resources"]
    assert secret["tls_certificate"]["watched_directory"] == {"path": str(tmp_path)}
    for cluster in rendered["static_resources"]["clusters"]:
        if cluster["name"] == "console":  # plain HTTP: only the console's public build
            assert "transport_socket" not in cluster
            continue
        upstream = cluster["transport_socket"]["typed_config"]
        assert upstream["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == str(
            tmp_path / "ca.pem"
        )
    assert (
        "transport_socket" not in load_base_config()["static_resources"]["listeners"][0]["filter_chains"][0]
    )


async def test_the_local_rate_limit_answers_429_and_resource_exhausted(tmp_path: Path) -> None:
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", free_port()),
        query=("127.0.0.1", free_port()),
        rate_limits=RateLimits(reads=Bucket(3, 3), anonymous=Bucket(3, 3)),
    )
    proxy = start_envoy(options, log_dir=tmp_path)
    try:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as http:
            statuses = [(await http.get("/v1/devices")).status_code for _ in range(10)]
        assert statuses.count(429) >= 5, statuses
        codes = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{options.listen_port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            for _ in range(10):
                with pytest.raises(grpc.aio.AioRpcError) as caught:  # no upstream runs: all fail
                    await stub.GetLatestReadings(query_pb2.GetLatestReadingsRequest(device_id="pi-1"))
                codes.append(caught.value.code())
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 5, codes
    finally:
        proxy.stop()
