"""A simulated direct device: a microcontroller that writes its readings over REST.

What `sensormesh up` runs for `soil-node`, and the pattern a real one follows:
sample every second, POST a small batch to Envoy's
`/v1/devices/{id}/readings:write` every few seconds with its bearer token, and
number the batch (`firstSequence` = committed sequence + 1) so that a retry
after a lost response stores nothing twice. On start it asks
`GET /v1/devices/{id}/uploadOffset` where to continue.

When the service refuses the device (401: token unknown, the device deleted
or its token rotated; 403: disabled; 404: deleted) it keeps sampling (the
newest 1,000 readings, a microcontroller's RAM), logs the answer once, reads
its token file again and asks again every minute or so, until it is allowed.

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


REFUSED_RETRY_INITIAL_S = 10.0
REFUSED_RETRY_MAX_S = 60.0


class WriteRefused(Exception):
    """The service refuses this device (disabled, deleted, token rotated) until someone acts."""


class WriteInvalid(Exception):
    """The service refused the batch itself (400): a bug here, which no retry fixes."""


class DirectDevice:
    """Samples simulated sensors and writes them in numbered batches."""

    def __init__(self, client: httpx.AsyncClient, device_id: str) -> None:
        self._client = client
        self._device_id = device_id
        self._sensors = [simulated.Simulated(s) for s in SENSORS]
        self.committed = 0
        self._resumed = False
        self._trimmed = 0  # oldest readings dropped from `pending` since the last resume

    async def resume(self, pending: list[Reading]) -> None:
        """Learn the committed sequence, where numbering continues. If it moved past what this
        device knew, a write whose response was lost did commit: those readings leave `pending`."""
        response = await self._client.get(f"/v1/devices/{self._device_id}/uploadOffset")
        self._check(response)
        committed = int(response.json().get("committedSequence", 0))
        if self._resumed and committed > self.committed:
            del pending[: max(0, committed - self.committed - self._trimmed)]
        self.committed, self._resumed, self._trimmed = committed, True, 0
        log.info("event=direct_device_resumed device_id=%s committed_sequence=%d", self._device_id, committed)

    def trim(self, pending: list[Reading], keep: int = 1000) -> None:
        """Drop the oldest readings beyond `keep`: a microcontroller's RAM is small."""
        if len(pending) > keep:
            self._trimmed += len(pending) - keep
            del pending[:-keep]

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
        if response.status_code == 400:
            raise WriteInvalid(f"HTTP 400: {response.text[:500]}")
        if response.status_code in (401, 403, 404):
            raise WriteRefused(f"HTTP {response.status_code}: {response.text[:500]}")
        response.raise_for_status()


class Retries:
    """When to write next: fast backoff for outages, slow while refused (logged once per change)."""

    def __init__(self, device_id: str, token_file: Path) -> None:
        self.device_id = device_id
        self.token_file = token_file
        self.outage = Backoff(0.5, 10.0)
        self.refused_backoff = Backoff(REFUSED_RETRY_INITIAL_S, REFUSED_RETRY_MAX_S)
        self.refused: str | None = None  # the service's answer while it refuses the device

    def succeeded(self) -> None:
        self.outage.reset()
        if self.refused is not None:
            log.info("event=direct_device_allowed device_id=%s", self.device_id)
            self.refused_backoff.reset()
        self.refused = None

    def failed(self, error: Exception) -> float:
        """Seconds until the next try."""
        if not isinstance(error, WriteRefused):
            delay = self.outage.next_delay()
            log.warning("event=direct_device_write_failed error=%r retry_in_s=%.1f", error, delay)
            return delay
        if str(error) != self.refused:
            log.error(
                "event=direct_device_refused device_id=%s answer=%r retry_max_s=%g action=%r",
                self.device_id, str(error), REFUSED_RETRY_MAX_S,
                f"re-enable the device, or write its new token to {self.token_file} (read on every retry)",
            )  # fmt: skip
        self.refused = str(error)
        return self.refused_backoff.next_delay()

    def token(self, current: str) -> str:
        """The token file's token (re-read before each retry), or `current` if it cannot be read."""
        with contextlib.suppress(OSError):
            return self.token_file.read_text().strip() or current
        return current


async def run(
    url: str, device_id: str, token_file: Path, sample_s: float, write_s: float, ca_file: Path | None = None
) -> None:
    """Sample and write until SIGTERM/SIGINT; failures are retried with backoff, refusals slowly."""
    stop = asyncio.Event()
    verify: ssl.SSLContext | bool = True if ca_file is None else ssl.create_default_context(cafile=ca_file)
    with stop_on_signals(stop.set):
        await _sample_and_write(
            url, device_id, Retries(device_id, token_file), (sample_s, write_s), stop, verify=verify
        )


async def _sample_and_write(
    url: str,
    device_id: str,
    retries: Retries,
    intervals: tuple[float, float],
    stop: asyncio.Event,
    transport: httpx.AsyncBaseTransport | None = None,  # tests
    verify: ssl.SSLContext | bool = True,
) -> None:
    sample_s, write_s = intervals
    loop = asyncio.get_running_loop()
    token = retries.token("")
    async with httpx.AsyncClient(base_url=url, timeout=10, transport=transport, verify=verify) as client:
        device = DirectDevice(client, device_id)
        pending: list[Reading] = []
        in_sync = False  # False at start and after a failure: ask for the mark before writing
        next_write = loop.time()  # the first batch goes out at once
        while not stop.is_set():
            pending.extend(await device.sample())
            if loop.time() >= next_write:
                client.headers["authorization"] = f"Bearer {token}"
                try:
                    if not in_sync:
                        await device.resume(pending)
                        in_sync = True
                    await device.write(pending)
                    pending.clear()
                    retries.succeeded()
                    next_write = loop.time() + write_s
                except (httpx.HTTPError, WriteRefused) as error:
                    in_sync = False
                    next_write = loop.time() + retries.failed(error)
                    token = retries.token(token)
            device.trim(pending)
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
    try:
        asyncio.run(
            run(
                args.url,
                args.device_id,
                args.token_file,
                args.sample_interval,
                args.write_interval,
                args.ca_file,
            )
        )
    except WriteInvalid as error:
        log.error("event=direct_device_invalid device_id=%s error=%s", args.device_id, error)
        return 2
    log.info("event=direct_device_stopped device_id=%s", args.device_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
