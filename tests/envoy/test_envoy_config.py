"""envoy/envoy.yaml and its renderer, checked with the real Envoy binary."""

from __future__ import annotations

import copy
import json
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
    EnvoyOptions,
    default_descriptor_path,
    envoy_binary,
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


def test_the_transcoder_serves_every_service_of_the_descriptor_set() -> None:
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_path().read_bytes())
    services = {
        f"{f.package}.{s.name}" for f in descriptors.file if f.package == "sensormesh.v1" for s in f.service
    }
    transcoder = _filters(load_base_config())[TRANSCODER]
    assert set(transcoder["services"]) == services
    assert transcoder["convert_grpc_status"] is True
    assert "google/rpc/error_details.proto" in {f.name for f in descriptors.file}


def test_rendering_changes_only_addresses_paths_and_limits(tmp_path: Path) -> None:
    base = load_base_config()
    options = EnvoyOptions(
        listen_address="0.0.0.0",
        listen_port=18080,
        admin_port=19901,
        ingest=("ingest.sensormesh.svc", 50051),
        query=("query.sensormesh.svc", 50052),
        descriptor_path=tmp_path / "d.binpb",
        requests_per_second=50,
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
    }
    assert _filters(rendered)[TRANSCODER]["proto_descriptor"] == str((tmp_path / "d.binpb").resolve())

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
    undone_filters["envoy.filters.http.local_ratelimit"]["token_bucket"] = _filters(base)[
        "envoy.filters.http.local_ratelimit"
    ]["token_bucket"]
    manager = undone["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    base_manager = base["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    replies = json.dumps(manager["local_reply_config"])
    assert "at most 50 requests per second" in replies  # the 429 names the limit
    manager["local_reply_config"] = base_manager["local_reply_config"]
    assert undone == base


async def test_the_local_rate_limit_answers_429_and_resource_exhausted(tmp_path: Path) -> None:
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", free_port()),
        query=("127.0.0.1", free_port()),
        requests_per_second=3,
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
