"""`sensormesh bench alerts`: alert rules judged at full ingest rate: what they cost ingest, and
how soon an alert reaches WatchAlerts after the reading that raises it is committed.

Against `sensormesh ingest` and `sensormesh control` child processes on a temporary embedded
PostgreSQL (or `--database-url`). Each round uploads the bench fleet as fast as the service
takes it (the ingest benchmark's clients), twice, in alternating order: once with 100
threshold and 20 anomaly rules selecting the fleet's devices (`--threshold-rules`,
`--anomaly-rules`), once with the same rules selecting none (the control service runs in
both, so the difference is the judging). `ingest_ratio` is with / without: the median over
rounds of each round's own pair (phases seconds apart, so a machine that slows down for a while
slows both sides of a pair alike; best-of-rounds on each side paired a fast moment of one with
any moment of the other). The samples/s figures are each phase's best round.

During the loaded runs a probe device writes a temperature that crosses a threshold rule of
its own every `--probe-every` seconds (and clears it in between), with WriteReadings, whose
answer comes after the commit; the time from that answer to the alert's arrival on a
WatchAlerts stream is one latency sample. The evaluator judges the probe behind the same
queue as the fleet, so the figure includes any backlog the full rate makes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from sensormesh.v1 import alert_pb2, alert_pb2_grpc, ingest_pb2, ingest_pb2_grpc, reading_pb2

from sensormesh_bench import workload
from sensormesh_bench.ingest.phases import IngestProcess, Measurement, measure_ingest
from sensormesh_bench.services import ServiceProcess
from sensormesh_bench.targets import Target
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage import migrate
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key
from sensormesh_core.storage.embedded import EmbeddedPostgres
from sensormesh_core.storage.registry import create_device

TARGETS = [Target("alert_latency_p99_ms", "<=", 1000), Target("ingest_ratio", ">=", 0.9)]
A = alert_pb2
FLEET_LABEL = "alerts-bench"
# Quantities the fleet's readings carry, and limits just beyond what they reach: every reading is
# judged, as a healthy fleet's are, and a rule fires only where the noise reaches the limit.
# (A limit inside the signal's swing would raise and clear an alert dozens of times a second.)
THRESHOLDS = {
    "acceleration_z": 11.3,  # the bench fleet's (sensormesh_bench/workload.py): 9.81 +- 0.3: 5 sigma
    "acceleration_x": 1.5,
    "angular_rate_x": 10.0,
    "temperature": 22.6,  # 21.5 to 22.5
    "cpu_temperature": 49.1,  # 48 to 49
    "relative_humidity": 46.1,  # 45 to 46
}
ANOMALIES = ("acceleration_z", "acceleration_y", "angular_rate_y")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="a migrated database to use (default: a temporary embedded one)"
    )
    parser.add_argument("--devices", type=int, default=8, help="simulated gateways (default 8)")
    parser.add_argument("--seconds-of-data", type=int, default=300, help="data per device (default 300)")
    parser.add_argument("--batch-size", type=int, default=1000, help="readings per batch (default 1000)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="rounds; ingest_ratio is the median of each round's pair (default 7)",
    )
    parser.add_argument("--threshold-rules", type=int, default=100, help="threshold rules (default 100)")
    parser.add_argument("--anomaly-rules", type=int, default=20, help="anomaly rules (default 20)")
    parser.add_argument(
        "--probe-every", type=float, default=0.1, help="seconds between probe crossings (0.1)"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-alerts-") as tmp:
        embedded = None
        if args.database_url:
            url = args.database_url
        else:
            embedded = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
            url = await asyncio.to_thread(embedded.url, "sensormesh_bench")
            await asyncio.to_thread(migrate.upgrade, url)
        try:
            return await _bench(args, url, Path(tmp))
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)


async def _bench(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    control = ServiceProcess("control", url, folder, {"SENSORMESH_ALERT_LEADER_RETRY": "PT0.2S"})
    await control.start()
    ingest = IngestProcess(
        {"SENSORMESH_DATABASE_URL": url, "SENSORMESH_INGEST_MAX_MESSAGE_BYTES": str(16 << 20)}
    )
    await ingest.start()
    try:
        key = await _setup(url)
        async with grpc.aio.insecure_channel(control.target, interceptors=aio_interceptors(key)) as channel:
            stub = alert_pb2_grpc.AlertServiceStub(channel)
            await _rules(stub, args)
            probe = await _device(url, "bench-probe", {})
            await stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=_probe_rule(probe[0])))
            await asyncio.sleep(1.0)  # the leader has loaded the rules
            return await _rounds(args, url, ingest, stub, probe)
    finally:
        await ingest.stop()
        await control.stop()


async def _rounds(
    args: argparse.Namespace,
    url: str,
    ingest: IngestProcess,
    stub: alert_pb2_grpc.AlertServiceStub,
    probe: tuple[str, str],
) -> dict[str, Any]:
    fleet = workload.fleet(args.seconds_of_data, time.time() - args.seconds_of_data - 120, args.batch_size)
    best: dict[str, Measurement] = {}
    pairs: list[float] = []
    latencies: list[float] = []
    raised_before = await _fleet_alerts(url)
    for round_number in range(args.rounds):
        order = ["on", "off"] if round_number % 2 == 0 else ["off", "on"]
        this_round: dict[str, Measurement] = {}
        for phase in order:
            labels = {FLEET_LABEL: "on"} if phase == "on" else {}
            devices = [
                await _device(url, f"bench-{phase}-{round_number}-{n}", labels) for n in range(args.devices)
            ]
            streams = [(token, workload.serialized(fleet.batches, device_id)) for device_id, token in devices]
            prober = _Probe(ingest.port, probe, stub, args.probe_every) if phase == "on" else None
            if prober is not None:
                await prober.start()
            try:
                measured = await measure_ingest(
                    ingest, streams, args.clients, 16 << 20, fleet.rows * len(devices),
                    fleet.samples * len(devices), None,
                )  # fmt: skip
            finally:
                if prober is not None:
                    latencies += await prober.stop()
            this_round[phase] = measured
            if phase not in best or measured.samples_per_s > best[phase].samples_per_s:
                best[phase] = measured
        pairs.append(this_round["on"].samples_per_s / this_round["off"].samples_per_s)
    latencies.sort()
    on, off = best["on"], best["off"]
    return {
        "rules_threshold": args.threshold_rules,
        "rules_anomaly": args.anomaly_rules,
        "samples_per_s_rules_off": round(off.samples_per_s),
        "samples_per_s_rules_on": round(on.samples_per_s),
        "ingest_ratio": round(statistics.median(pairs), 3),
        "ingest_ratio_per_round": [round(p, 3) for p in pairs],
        "fleet_alerts_raised": await _fleet_alerts(url) - raised_before,
        "alert_latency_samples": len(latencies),
        "alert_latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "alert_latency_p99_ms": round(
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1
        )
        if latencies
        else None,
        "alert_latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }


class _Probe:
    """Crosses the probe rule's threshold every `every` seconds and times each alert's arrival.

    An alert is matched to its crossing by its first time (the crossing reading's sample
    time), not by order: when the evaluator judges a crossing and the clearing after it
    together, the watch may see that alert first already cleared, and it still counts."""

    def __init__(
        self, port: int, device: tuple[str, str], alerts: alert_pb2_grpc.AlertServiceStub, every: float
    ):
        self._port, (self._device_id, self._token) = port, device
        self._alerts, self._every = alerts, every
        self._sent: dict[int, float] = {}  # crossing's sample time (microseconds) -> when committed
        self._latencies: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._sequence = int(time.time() * 1000)  # above anything earlier runs used

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._cross())]
        await asyncio.sleep(0.2)  # the watch is open before the first crossing

    async def stop(self) -> list[float]:
        await asyncio.sleep(2.0)  # the last crossings' alerts arrive
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self._latencies

    async def _watch(self) -> None:
        seen: set[int] = set()
        request = A.WatchAlertsRequest(device_id=self._device_id)
        async for change in self._alerts.WatchAlerts(request):
            alert = change.alert
            if change.HasField("alert") and alert.alert_id not in seen:
                seen.add(alert.alert_id)
                sent = self._sent.get(alert.first_time.ToMicroseconds())
                if sent is not None:
                    self._latencies.append(time.monotonic() - sent)

    async def _cross(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self._port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            while True:
                for value in (60.0, 40.0):  # cross, then clear
                    sampled = await self._write(stub, value)
                    if value > 50:
                        self._sent[sampled] = time.monotonic()
                    await asyncio.sleep(self._every / 2)

    async def _write(self, stub: ingest_pb2_grpc.IngestServiceStub, value: float) -> int:
        """Write one reading; returns its sample time in microseconds once it is committed."""
        self._sequence += 1
        reading = reading_pb2.Reading(
            sensor="probe", environment=reading_pb2.EnvironmentPayload(temperature_celsius=value)
        )
        reading.sample_time.GetCurrentTime()
        request = ingest_pb2.WriteReadingsRequest(
            device_id=self._device_id, readings=[reading], first_sequence=self._sequence
        )
        await stub.WriteReadings(request, metadata=(("authorization", f"Bearer {self._token}"),))
        return reading.sample_time.ToMicroseconds()


async def _setup(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        _, key = await create_key(conn, "bench-alerts", 3, creator=LOCAL_CREATOR)
    finally:
        await conn.close()
    return key


async def _device(url: str, device_id: str, labels: dict[str, str]) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        record, token = await create_device(conn, device_id, labels=labels)
    finally:
        await conn.close()
    return record.device_id, token


async def _rules(stub: alert_pb2_grpc.AlertServiceStub, args: argparse.Namespace) -> None:
    rng = random.Random(5)
    quantities = list(THRESHOLDS)
    for number in range(args.threshold_rules):
        quantity = quantities[number % len(quantities)]
        rule = A.AlertRule(rule_id=f"bench-threshold-{number}", severity=A.ALERT_SEVERITY_MINOR)
        rule.devices.labels[FLEET_LABEL] = "on"
        rule.threshold.quantity = quantity
        rule.threshold.above = THRESHOLDS[quantity] * rng.uniform(1.0, 1.05)
        rule.threshold.hysteresis = abs(THRESHOLDS[quantity]) * 0.01
        await stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
    for number in range(args.anomaly_rules):
        rule = A.AlertRule(rule_id=f"bench-anomaly-{number}", severity=A.ALERT_SEVERITY_WARNING)
        rule.devices.labels[FLEET_LABEL] = "on"
        rule.anomaly.quantity = ANOMALIES[number % len(ANOMALIES)]
        rule.anomaly.span = 100 + 50 * number
        rule.anomaly.deviations = 6.0
        await stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))


def _probe_rule(device_id: str) -> alert_pb2.AlertRule:
    rule = A.AlertRule(rule_id="bench-probe", severity=A.ALERT_SEVERITY_CRITICAL)
    rule.devices.device_ids.append(device_id)
    rule.threshold.quantity = "temperature"
    rule.threshold.above = 50.0
    return rule


async def _fleet_alerts(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM alerts WHERE rule_id <> 'bench-probe'"))
    finally:
        await conn.close()
