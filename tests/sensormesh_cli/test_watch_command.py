"""`sensormesh watch` (not on a terminal: one line per reading) against real ingest and query services."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import device_pb2, device_pb2_grpc, ingest_pb2, ingest_pb2_grpc, reading_pb2

from tests.sensormesh_cli.conftest import Services
from tests.support.access import bearer

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


def _register(services: Services, device_id: str) -> str:
    with grpc.insecure_channel(services.query) as channel:
        created = device_pb2_grpc.DeviceServiceStub(channel).CreateDevice(
            device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=device_id)),
            metadata=bearer(services.admin_key),
            timeout=10,
        )
    return created.token


def _write(services: Services, device_id: str, token: str, readings: list[reading_pb2.Reading]) -> None:
    with grpc.insecure_channel(services.ingest) as channel:
        response = ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(
            ingest_pb2.WriteReadingsRequest(device_id=device_id, readings=readings),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    assert response.accepted_count == len(readings)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _environment(temperature: float) -> reading_pb2.Reading:
    payload = reading_pb2.EnvironmentPayload(temperature_celsius=temperature, relative_humidity_percent=40.0)
    return reading_pb2.Reading(sample_time=_now(), sensor="air", environment=payload)


def _watch(services: Services, *args: str) -> subprocess.Popen[str]:
    """`sensormesh watch` with the admin key in SENSORMESH_API_KEY (the devices tests use the file)."""
    env = {**os.environ, "SENSORMESH_API_KEY": services.admin_key}
    return subprocess.Popen(
        [sys.executable, "-m", "sensormesh_cli", "watch", *args, "--server", services.query],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_watch_prints_committed_readings_as_lines_and_replays_with_since(services: Services) -> None:
    token = _register(services, "watch-pi-1")
    _write(services, "watch-pi-1", token, [_environment(20.5)])  # before the feed: only --since shows it
    feed = _watch(services, "watch-pi-1", "--since", "5m", "--count", "3")
    try:
        assert feed.stdout is not None
        first = feed.stdout.readline()  # the replayed reading arrives once the feed is registered
        _write(services, "watch-pi-1", token, [_environment(21.0)])
        _write(services, "watch-pi-1", token, [_environment(21.5)])
        out, err = feed.communicate(timeout=60)
    finally:
        feed.kill()
    lines = [first, *out.splitlines()]
    assert feed.returncode == 0, err
    assert [line.split()[1:4] for line in lines] == [
        ["air", "temperature=20.5", "Cel"],
        ["air", "temperature=21", "Cel"],
        ["air", "temperature=21.5", "Cel"],
    ]
    assert all("relative_humidity=40 %" in line for line in lines)


def test_watch_shows_only_the_asked_quantity(services: Services) -> None:
    token = _register(services, "watch-pi-2")
    _write(services, "watch-pi-2", token, [_environment(19.0)])
    feed = _watch(services, "watch-pi-2", "--since", "5m", "--count", "1", "--quantity", "relative_humidity")
    out, err = feed.communicate(timeout=60)
    assert feed.returncode == 0, err
    assert out.split()[1:] == ["air", "relative_humidity=40", "%"]


def test_watch_of_an_unknown_device_fails_with_its_name(services: Services) -> None:
    feed = _watch(services, "no-such-device", "--count", "1")
    _, err = feed.communicate(timeout=60)
    assert feed.returncode == 1
    assert "NOT_FOUND" in err and "no-such-device" in err
