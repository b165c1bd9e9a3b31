"""What the alert tests share: a device writing temperatures through the real ingest service at
chosen sample times, rules made through the real AlertService, and waiting on alerts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import alert_pb2, alert_pb2_grpc, ingest_pb2, ingest_pb2_grpc, reading_pb2

from tests.support.waiting import wait_until

A = alert_pb2
START = int(time.time()) - 3600  # an hour ago: sample times the tests choose, all in the past


@dataclass
class Writer:
    """A device that writes environment readings through ingest, numbering them itself."""

    stub: ingest_pb2_grpc.IngestServiceStub
    device_id: str
    token: str
    sequence: int = 0
    sensor: str = "bme280"
    statuses: list[ingest_pb2.InputStatus] = field(default_factory=list)

    async def temperatures(self, values: Sequence[float], *, start_s: float, step_s: float = 1.0) -> None:
        """One reading per value, `step_s` apart from START + `start_s`, in one batch."""
        readings = []
        for index, value in enumerate(values):
            at = START + start_s + index * step_s
            self.sequence += 1
            stamp = Timestamp(seconds=int(at), nanos=int((at % 1) * 1e9))
            reading = reading_pb2.Reading(
                sensor=self.sensor,
                sample_time=stamp,
                environment=reading_pb2.EnvironmentPayload(temperature_celsius=value),
            )
            readings.append(reading)
        first = self.sequence - len(values) + 1
        request = ingest_pb2.WriteReadingsRequest(
            device_id=self.device_id, readings=readings, first_sequence=first
        )
        await self.stub.WriteReadings(request, metadata=(("authorization", f"Bearer {self.token}"),))


def threshold_rule(
    rule_id: str,
    *,
    above: float,
    for_s: float = 0,
    hysteresis: float = 0,
    devices: Sequence[str] = (),
    severity: int = A.ALERT_SEVERITY_MAJOR,
) -> alert_pb2.AlertRule:
    rule = A.AlertRule(rule_id=rule_id, severity=severity, description=f"{rule_id}: check the heater")  # type: ignore[arg-type]
    rule.devices.device_ids.extend(devices)
    rule.threshold.quantity = "temperature"
    rule.threshold.above = above
    rule.threshold.hysteresis = hysteresis
    rule.threshold.for_duration.FromSeconds(int(for_s))
    return rule


async def alerts_of(stub: alert_pb2_grpc.AlertServiceStub, rule_id: str) -> list[alert_pb2.Alert]:
    return list((await stub.ListAlerts(A.ListAlertsRequest(rule_id=rule_id))).alerts)


async def until_alert(
    stub: alert_pb2_grpc.AlertServiceStub, rule_id: str, state: int, within: float = 15
) -> alert_pb2.Alert:
    """The newest alert of `rule_id`, once it is in `state`."""

    async def reached() -> bool:
        found = await alerts_of(stub, rule_id)
        return bool(found) and found[0].state == state

    await wait_until(reached, within, f"an alert of {rule_id} in {A.AlertState.Name(state)}")  # type: ignore[arg-type]
    return (await alerts_of(stub, rule_id))[0]


async def refusal(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call was not refused")


async def upload(
    writer: Writer,
    *,
    statuses: Sequence[ingest_pb2.InputStatus] = (),
    thinned: Sequence[ingest_pb2.ThinningReport] = (),
    temperature: float = 20.0,
    start_s: float = 0.0,
) -> None:
    """One UploadReadings batch of one reading, carrying input statuses and thinning reports."""
    writer.sequence += 1
    at = START + start_s
    reading = reading_pb2.Reading(
        sensor=writer.sensor,
        sample_time=Timestamp(seconds=int(at)),
        environment=reading_pb2.EnvironmentPayload(temperature_celsius=temperature),
    )
    batch = ingest_pb2.UploadReadingsRequest(
        device_id=writer.device_id,
        first_sequence=writer.sequence,
        last_sequence=writer.sequence,
        readings=[reading_pb2.SequencedReading(sequence=writer.sequence, reading=reading)],
        input_statuses=statuses,
        thinned=thinned,
    )

    async def one() -> Any:
        yield batch

    await writer.stub.UploadReadings(one(), metadata=(("authorization", f"Bearer {writer.token}"),))


def status(name: str, failing: bool, error: str = "") -> ingest_pb2.InputStatus:
    found = ingest_pb2.InputStatus(
        input=name,
        state=ingest_pb2.INPUT_STATE_FAILING if failing else ingest_pb2.INPUT_STATE_OK,
        last_error=error,
        error_count=1 if failing else 0,
    )
    found.observe_time.GetCurrentTime()
    return found


def thinning(sensor: str, count: int, start_s: float) -> ingest_pb2.ThinningReport:
    report = ingest_pb2.ThinningReport(sensor=sensor, count=count)
    report.first_sample_time.FromSeconds(int(START + start_s))
    report.last_sample_time.FromSeconds(int(START + start_s + 10))
    return report
