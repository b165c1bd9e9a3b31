"""The simulated direct device against a REST double of the ingest endpoints: refused while its
device is disabled, it keeps running, says so once, and then writes every reading once."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from gateway_agent.backoff import Backoff
from sensormesh_cli.stack import direct_device
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(60)


class Service:
    """`uploadOffset` and `readings:write` as the real service answers them, for one device."""

    def __init__(self) -> None:
        self.enabled = True
        self.stored: list[int] = []  # sequence numbers, duplicates kept
        self.refusals = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.enabled:
            self.refusals += 1
            return httpx.Response(403, json={"code": 7, "message": "device 'soil-node' is disabled"})
        committed = max(self.stored, default=0)
        if request.url.path.endswith("/uploadOffset"):
            return httpx.Response(200, json={"committedSequence": str(committed)})
        body = json.loads(request.content)
        first = int(body["firstSequence"])
        numbers = [first + i for i in range(len(body["readings"]))]
        self.stored += [n for n in numbers if n > committed]
        return httpx.Response(200, json={"committedSequence": str(max(self.stored, default=0))})


async def test_a_disabled_direct_device_keeps_sampling_and_writes_everything_once_when_enabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token_file = tmp_path / "soil-node.token"
    token_file.write_text("smdt_test\n")
    service, stop = Service(), asyncio.Event()
    retries = direct_device.Retries("soil-node", token_file)
    retries.refused_backoff = Backoff(0.05, 0.1)
    run = direct_device._sample_and_write(
        "http://envoy", "soil-node", retries, (0.01, 0.02), stop, httpx.MockTransport(service)
    )
    task = asyncio.create_task(run)
    try:
        await until(lambda: len(service.stored) >= 10)
        service.enabled = False
        await until(lambda: service.refusals >= 5)
        assert not task.done()
        (line,) = [r.getMessage() for r in caplog.records if "event=direct_device_refused" in r.getMessage()]
        assert "HTTP 403" in line and "is disabled" in line and str(token_file) in line
        refused_at = len(service.stored)
        service.enabled = True
        await until(lambda: len(service.stored) > refused_at + 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert service.stored == list(range(1, len(service.stored) + 1))  # no gap, nothing twice
