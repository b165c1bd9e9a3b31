"""Rate limits that isolate, with the real Envoy (envoy.yaml's default figures) in
front of the real ingest and query processes: an anonymous flood (`GET /nope`)
and a device flooding with its own token are limited, while a second device's
writes go through as often as without the floods. Measured in one run as
ratios: the second device's accepted writes and its write rate with the floods
over without them.

The floods come from other loopback addresses (127.0.0.2 and 127.0.0.3), as
they would from other hosts: one address is held as a whole by the per-source
bucket by design, so a flood from the second device's own address would be
allowed to slow it, within that bucket's figure."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess, load_base_config, start_envoy
from sensormesh_core.storage.registry import create_device
from tests.envoy.conftest import Stack
from tests.envoy.test_rest import environment
from tests.support.ports import free_port

pytestmark = [pytest.mark.storage, pytest.mark.slow, pytest.mark.timeout(180)]

log = logging.getLogger(__name__)

PACE_PER_S = 20  # the second device's writes: well inside its bucket (50/s)
PHASE_S = 3.0
FLOODERS = 8  # concurrent requests per flood


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def envoy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyProcess]:
    """An Envoy with envoy.yaml's own rate limits (the shared stack's are raised for other tests)."""
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", stack.ingest_port),
        query=("127.0.0.1", stack.query_port),
        health_check_interval_s=0.5,
    )
    proxy = start_envoy(options, log_dir=tmp_path_factory.mktemp("rate-limits"))
    yield proxy
    proxy.stop()


@pytest.fixture
async def devices(stack: Stack) -> tuple[Device, Device]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        made = [await create_device(conn, f"rl-{name}-{uuid.uuid4().hex[:8]}") for name in ("flood", "calm")]
    finally:
        await conn.close()
    return Device(made[0][0].device_id, made[0][1]), Device(made[1][0].device_id, made[1][1])


def _client(envoy: EnvoyProcess, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=envoy.base_url, transport=transport, timeout=10)


async def _paced_writes(http: httpx.AsyncClient, device: Device, count: int) -> tuple[int, float]:
    """`count` writes at PACE_PER_S; (accepted, seconds taken)."""
    started = time.monotonic()
    accepted = 0
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / PACE_PER_S - time.monotonic()))
        reading = environment("bme280", datetime.now(UTC) - timedelta(seconds=1), 20.0)
        answer = await http.post(
            f"/v1/devices/{device.device_id}/readings:write",
            json={"readings": [reading]},
            headers=device.headers,
        )
        accepted += answer.status_code == 200
    return accepted, time.monotonic() - started


@dataclass
class Flood:
    statuses: Counter[int]
    refusal: dict[str, Any] | None = None  # the body of a 429
    seconds: float = 0.0


OUTRUN_S = 20.0  # how long a flood may go on past its phase until its bucket runs out


async def _flood(http: httpx.AsyncClient, path: str, headers: dict[str, str], until: float) -> Flood:
    """Eight senders until `until`, and on until the first refusal if none came by then: on a
    loaded machine a flood's client may send slower than its bucket refills for a while (293
    answers of 200 in 4 s once, inside the 100 + 50/s the bucket allows), and a flood that
    was never refused tests nothing."""
    flood = Flood(Counter())
    started = time.monotonic()

    async def one_sender() -> None:
        while (now := time.monotonic()) < until or (flood.refusal is None and now < until + OUTRUN_S):
            answer = await http.get(path, headers=headers)
            flood.statuses[answer.status_code] += 1
            if answer.status_code == 429 and flood.refusal is None:
                flood.refusal = answer.json()

    await asyncio.gather(*(one_sender() for _ in range(FLOODERS)))
    flood.seconds = time.monotonic() - started
    return flood


def _bucket(name: str, entries: dict[str, str]) -> tuple[int, int]:
    """(per second, burst) of envoy.yaml's bucket for `entries` in filter `name`."""
    manager = load_base_config()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (typed,) = [f["typed_config"] for f in manager["typed_config"]["http_filters"] if f["name"] == name]
    for descriptor in typed["descriptors"]:
        if {e["key"]: e["value"] for e in descriptor["entries"]} == entries:
            bucket = descriptor["token_bucket"]
            return int(bucket["tokens_per_fill"]), int(bucket["max_tokens"])
    raise AssertionError(f"no bucket {entries} in {name}")


async def test_floods_are_limited_and_another_devices_writes_are_not(
    envoy: EnvoyProcess, devices: tuple[Device, Device]
) -> None:
    flooder, calm = devices
    count = int(PHASE_S * PACE_PER_S)
    async with (
        _client(envoy, "127.0.0.1") as own,
        _client(envoy, "127.0.0.2") as anonymous,
        _client(envoy, "127.0.0.3") as device_flood,
    ):
        alone_accepted, alone_s = await _paced_writes(own, calm, count)

        until = time.monotonic() + PHASE_S + 1.0  # the floods outlast the measured writes
        floods = asyncio.gather(
            _flood(anonymous, "/nope", {}, until),
            _flood(device_flood, f"/v1/devices/{flooder.device_id}/uploadOffset", flooder.headers, until),
        )
        await asyncio.sleep(0.2)  # the floods are running (and their buckets empty) before measuring
        flooded_accepted, flooded_s = await _paced_writes(own, calm, count)
        anonymous_flood, device_flood_result = await floods
    anonymous_statuses, device_statuses = anonymous_flood.statuses, device_flood_result.statuses
    accepted_ratio = flooded_accepted / alone_accepted
    rate_ratio = (flooded_accepted / flooded_s) / (alone_accepted / alone_s)
    log.warning(
        "rate limits: calm device accepted %d/%d alone (%.1f/s), %d/%d during floods (%.1f/s): "
        "accepted ratio %.2f, rate ratio %.2f; anonymous flood %s; device flood %s",
        alone_accepted, count, alone_accepted / alone_s, flooded_accepted, count, flooded_accepted / flooded_s,
        accepted_ratio, rate_ratio, dict(anonymous_statuses), dict(device_statuses),
    )  # fmt: skip
    assert alone_accepted == count
    assert accepted_ratio == 1.0, "every write of the calm device is accepted during the floods"
    # Paced, so only added latency lowers the rate: on a 2-core machine the floods' own CPU (their
    # client, Envoy answering them) slows every request a little (0.88-0.99 measured); what the
    # limits guarantee is that none of the calm device's writes is refused.
    assert rate_ratio > 0.6, "and at about the same rate"

    # Each flood got at most what its own bucket holds, and was refused the rest. (How much of a
    # flood is refused depends on how fast its client sends on a busy machine: a share refused
    # above one half failed once at 247 of 545 under CI load; the bound is what the limit owes.)
    anonymous_rate, anonymous_burst = _bucket("sensormesh.rate_limit.anonymous", {"authorization": "absent"})
    writes_rate, writes_burst = _bucket(
        "sensormesh.rate_limit.credential", {"family": "writes", "credential": ""}
    )
    anonymous_allowed = anonymous_burst + anonymous_rate * anonymous_flood.seconds * 1.2
    device_allowed = writes_burst + writes_rate * device_flood_result.seconds * 1.2
    assert anonymous_statuses[404] <= anonymous_allowed, anonymous_statuses
    assert device_statuses[200] <= device_allowed, device_statuses
    assert set(anonymous_statuses) == {404, 429} and set(device_statuses) == {200, 429}

    # REST callers get the google.rpc.Status JSON naming which bucket ran out.
    for flood, limit in ((anonymous_flood, "anonymous"), (device_flood_result, "credential")):
        assert flood.refusal is not None and flood.refusal["code"] == 8
        assert flood.refusal["details"][0] == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMITED",
            "domain": "sensormesh.dev",
            "metadata": {"limit": limit},
        }
        assert f"({limit} limit)" in flood.refusal["message"]


async def test_a_flooding_device_sees_resource_exhausted_over_grpc_and_another_device_does_not(
    envoy: EnvoyProcess, devices: tuple[Device, Device]
) -> None:
    flooder, calm = devices
    writes_rate, writes_burst = _bucket(
        "sensormesh.rate_limit.credential", {"family": "writes", "credential": ""}
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.options.listen_port}") as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)

        async def offset(device: Device) -> grpc.StatusCode:
            try:
                await ingest.GetUploadOffset(
                    ingest_pb2.GetUploadOffsetRequest(device_id=device.device_id),
                    metadata=(("authorization", f"Bearer {device.token}"),),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = Counter(
            await asyncio.gather(*(offset(flooder) for _ in range(writes_burst + 2 * writes_rate)))
        )
        assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] > 0, codes
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert await offset(calm) is grpc.StatusCode.OK
