"""A simulated direct device: a microcontroller that writes its readings over REST.

What `sensormesh up` runs for `soil-node`, and the pattern a real one follows:
sample every second, POST a small batch to Envoy's
`/v1/devices/{id}/readings:write` every few seconds with its bearer token, and
number the batch (`firstSequence` = committed sequence + 1) so that a retry
after a lost response stores nothing twice. On start it asks
`GET /v1/devices/{id}/uploadOffset` where to continue.

    python -m sensormesh_cli.stack.direct_device --url http://127.0.0.1:8080 \\
        --device-id soil-node --token-file .sensormesh/devices/soil-node.token

With an https URL it verifies Envoy against the system's roots, or against
`--ca-file` (the local CA of `sensormesh up --tls`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import json_format
from sensormesh.v1 import ingest_pb2

from gateway_agent.backoff import Backoff
from gateway_agent.inputs import simulated
from gateway_agent.readings import Reading
from sensormesh_core.logs import configure_logging
from sensormesh_core.stop_signals import stop_on_signals

log = logging.getLogger("sensormesh.direct_device")

SENSORS = (
    simulated.Settings(kind="generic", sensor="sim-soil", measurement="soil_moisture", unit="%", seed=31),
    simulated.Settings(
        kind="generic", sensor="sim-soil", measurement="soil_temperature", unit="Cel", seed=32
    ),
)


class WriteRefused(Exception):
    """The service answered with an error a retry cannot fix (bad token, unknown device)."""


class DirectDevice:
    """Samples simulated sensors and writes them in numbered batches."""

    def __init__(self, client: httpx.AsyncClient, device_id: str) -> None:
        self._client = client
        self._device_id = device_id
        self._sensors = [simulated.Simulated(s) for s in SENSORS]
        self.committed = 0
        self._resumed = False

    async def resume(self, pending: list[Reading]) -> None:
        """Learn the committed sequence, where numbering continues. If it moved past what this
        device knew, a write whose response was lost did commit: those readings leave `pending`."""
        response = await self._client.get(f"/v1/devices/{self._device_id}/uploadOffset")
        self._check(response)
        committed = int(response.json().get("committedSequence", 0))
        if self._resumed and committed > self.committed:
            del pending[: committed - self.committed]
        self.committed, self._resumed = committed, True
        log.info("event=direct_device_resumed device_id=%s committed_sequence=%d", self._device_id, committed)

    async def sample(self) -> list[Reading]:
        readings: list[Reading] = []
        for sensor in self._sensors:
            readings.extend(await sensor.read())
        return readings

    async def write(self, readings: Sequence[Reading]) -> None:
        """Write one batch numbered after the mark. Called only in sync with the mark, so
        duplicates mean another writer (a curl by hand) took the numbers: renumber and resend once."""
        response = await self._post(readings, self.committed + 1)
        if int(response.get("duplicateCount", 0)) > 0:
            self.committed = int(response["committedSequence"])
            response = await self._post(readings, self.committed + 1)
        self.committed = int(response["committedSequence"])
        log.info(
            "event=direct_device_wrote device_id=%s accepted=%s committed_sequence=%d",
            self._device_id, response.get("acceptedCount"), self.committed,
        )  # fmt: skip

    async def _post(self, readings: Sequence[Reading], first_sequence: int) -> dict[str, Any]:
        request = ingest_pb2.WriteReadingsRequest(readings=readings, first_sequence=first_sequence)
        body = json_format.MessageToDict(request)
        response = await self._client.post(f"/v1/devices/{self._device_id}/readings:write", json=body)
        self._check(response)
        result: dict[str, Any] = response.json()
        return result

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code in (400, 401, 403, 404):
            raise WriteRefused(f"HTTP {response.status_code}: {response.text[:500]}")
        response.raise_for_status()


async def run(
    url: str, device_id: str, token: str, sample_s: float, write_s: float, ca_file: Path | None = None
) -> None:
    """Sample and write until SIGTERM/SIGINT; transient failures are retried with backoff."""
    stop = asyncio.Event()
    verify: ssl.SSLContext | bool = True if ca_file is None else ssl.create_default_context(cafile=ca_file)
    with stop_on_signals(stop.set):
        await _sample_and_write(url, device_id, token, (sample_s, write_s), stop, verify)


async def _sample_and_write(
    url: str,
    device_id: str,
    token: str,
    intervals: tuple[float, float],
    stop: asyncio.Event,
    verify: ssl.SSLContext | bool,
) -> None:
    sample_s, write_s = intervals
    loop = asyncio.get_running_loop()
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10, verify=verify) as client:
        device = DirectDevice(client, device_id)
        backoff = Backoff(0.5, 10.0)
        pending: list[Reading] = []
        in_sync = False  # False at start and after a failure: ask for the mark before writing
        next_write = loop.time()  # the first batch goes out at once
        while not stop.is_set():
            pending.extend(await device.sample())
            if loop.time() >= next_write:
                try:
                    if not in_sync:
                        await device.resume(pending)
                        del pending[:-1000]  # a microcontroller's RAM is small: keep the newest
                        in_sync = True
                    await device.write(pending)
                    pending.clear()
                    backoff.reset()
                    next_write = loop.time() + write_s
                except httpx.HTTPError as error:
                    in_sync = False
                    delay = backoff.next_delay()
                    log.warning("event=direct_device_write_failed error=%r retry_in_s=%.1f", error, delay)
                    next_write = loop.time() + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sample_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensormesh_cli.stack.direct_device", description=__doc__)
    parser.add_argument("--url", required=True, help="Envoy's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--ca-file", type=Path, help="PEM CA to verify an https URL against")
    parser.add_argument(
        "--sample-interval", type=float, default=1.0, help="seconds between samples (default 1)"
    )
    parser.add_argument(
        "--write-interval", type=float, default=5.0, help="seconds between writes (default 5)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    token = args.token_file.read_text().strip()
    try:
        asyncio.run(
            run(args.url, args.device_id, token, args.sample_interval, args.write_interval, args.ca_file)
        )
    except WriteRefused as error:
        log.error("event=direct_device_refused device_id=%s error=%s", args.device_id, error)
        return 2
    log.info("event=direct_device_stopped device_id=%s", args.device_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
