"""Alert rules judged on readings committed through the real ingest service, by the real control
service: raised, counted, cleared, acknowledged, across a restart and a failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sensormesh.v1 import alert_pb2_grpc, ingest_pb2_grpc

from control_service.server import ControlServer, start_control_server
from ingest_service.server import IngestServer
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.access.principal import ROLE_VIEWER
from sensormesh_core.device_scope import DeviceScope
from tests.control_service.alerting_support import (
    START,
    A,
    Writer,
    alerts_of,
    refusal,
    status,
    thinning,
    threshold_rule,
    until_alert,
    upload,
)
from tests.control_service.conftest import Device, control_settings
from tests.ingest_service.conftest import violations
from tests.support.access import make_key
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


@pytest.fixture
async def alerts_stub(
    control: ControlServer, operator_key: str
) -> AsyncIterator[alert_pb2_grpc.AlertServiceStub]:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{control.port}", interceptors=aio_interceptors(operator_key)
    ) as ch:
        yield alert_pb2_grpc.AlertServiceStub(ch)


@pytest.fixture
async def writer(ingest: IngestServer, device: Device, control: ControlServer) -> AsyncIterator[Writer]:
    assert control.alerting is not None
    await asyncio.wait_for(
        control.alerting.leadership.elected.wait(), 10
    )  # evaluating before the first write
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        yield Writer(ingest_pb2_grpc.IngestServiceStub(channel), device.device_id, device.token)


async def test_a_threshold_raises_counts_clears_and_is_acknowledged(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer
) -> None:
    await alerts_stub.CreateAlertRule(
        A.CreateAlertRuleRequest(alert_rule=threshold_rule("too-hot", above=30, hysteresis=2))
    )
    watch = alerts_stub.WatchAlerts(A.WatchAlertsRequest())
    await writer.temperatures([25, 31, 32, 33], start_s=0)
    raised = await until_alert(alerts_stub, "too-hot", A.ALERT_STATE_ACTIVE_UNACK)
    assert (raised.device_id, raised.sensor, raised.quantity) == (writer.device_id, "bme280", "temperature")
    assert raised.first_time.seconds - writer_start(writer) == 1  # the reading at t=1 raised it
    await wait_until(_count(alerts_stub, "too-hot", 3), 10, "three readings counted")
    first = await asyncio.wait_for(_next_alert(watch), 10)
    assert first.rule_id == "too-hot" and first.severity == A.ALERT_SEVERITY_MAJOR

    await writer.temperatures([29, 28.5], start_s=4)  # in the hysteresis band: still active
    await writer.temperatures([27.9], start_s=6)  # back by 2: cleared
    cleared = await until_alert(alerts_stub, "too-hot", A.ALERT_STATE_CLEARED_UNACK)
    assert cleared.cleared_by == "rule" and cleared.count == 3 and cleared.last_value == 33

    acked = (await alerts_stub.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=cleared.alert_id))).alert
    assert (acked.state, acked.acknowledged_by) == (A.ALERT_STATE_CLEARED_ACK, "key:test-admin")
    again = (await alerts_stub.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=cleared.alert_id))).alert
    assert again.acknowledge_time == acked.acknowledge_time  # idempotent
    watch.cancel()


async def test_a_for_clock_in_reading_time_survives_a_restart_of_the_evaluator(
    database_url: str, alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer, control: ControlServer
) -> None:
    rule = threshold_rule("hot-for-10s", above=30, for_s=10)
    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
    await writer.temperatures([31] * 6, start_s=100)  # held 5 s: not yet
    await wait_until(_cursor_at(control, writer.sequence), 10, "the batch judged")
    assert await alerts_of(alerts_stub, "hot-for-10s") == []
    await control.stop(0.5)  # the evaluator goes away mid-clock
    second = await start_control_server(control_settings(database_url), database_url=database_url)
    try:
        assert second.alerting is not None
        await asyncio.wait_for(second.alerting.leadership.elected.wait(), 10)
        await writer.temperatures([31] * 6, start_s=106)  # held 11 s in all
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{second.port}", interceptors=aio_interceptors(await _key(database_url))
        ) as channel:
            stub = alert_pb2_grpc.AlertServiceStub(channel)
            raised = await until_alert(stub, "hot-for-10s", A.ALERT_STATE_ACTIVE_UNACK)
            assert raised.first_time.seconds - writer_start(writer) == 100  # where the holding began
            # Raised by the reading at 110 (11 s after 100, 11 readings), then 111 met it too.
            await wait_until(_count(stub, "hot-for-10s", 12), 10, "the last reading counted")
            raised = (await alerts_of(stub, "hot-for-10s"))[0]
            assert raised.last_time.seconds - writer_start(writer) == 111
    finally:
        await second.stop(0.5)


async def _key(database_url: str) -> str:
    from tests.support.access import make_key

    return await make_key(database_url, "second-admin")


def writer_start(writer: Writer) -> int:
    from tests.control_service.alerting_support import START

    return START


def _count(stub: alert_pb2_grpc.AlertServiceStub, rule_id: str, count: int) -> object:
    async def counted() -> bool:
        found = await alerts_of(stub, rule_id)
        return bool(found) and found[0].count == count

    return counted


def _cursor_at(control: ControlServer, sequence: int) -> object:
    async def judged() -> bool:
        assert control.alerting is not None
        async with control._pool.acquire() as conn:
            value = await conn.fetchval("SELECT max(sequence) FROM alert_cursors")
        return value is not None and value >= sequence

    return judged


async def _next_alert(watch: object) -> A.Alert:
    async for change in watch:  # type: ignore[attr-defined]
        if change.HasField("alert"):
            return change.alert
    raise AssertionError("the watch ended")


async def test_batches_committed_in_quick_succession_are_each_judged_the_last_without_another_signal(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer
) -> None:
    """A device is judged at most once per round interval; the batches committed meanwhile are judged
    together, in reading order, and the last one is judged when that time is up, though no
    signal follows it."""
    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=threshold_rule("flap", above=30)))
    for second, value in enumerate([31, 20, 32, 21, 33, 22]):  # three crossings, each cleared
        await writer.temperatures([value], start_s=300 + second)

    async def three_cleared() -> bool:
        found = await alerts_of(alerts_stub, "flap")
        return len(found) == 3 and all(a.state == A.ALERT_STATE_CLEARED_UNACK for a in found)

    await wait_until(three_cleared, 15, "three alerts raised and cleared")
    found = sorted(await alerts_of(alerts_stub, "flap"), key=lambda a: a.first_time.seconds)
    assert [a.first_time.seconds - START for a in found] == [300, 302, 304]
    assert [a.last_value for a in found] == [31, 32, 33]


async def test_devices_judged_in_one_round_each_get_their_own_alerts_and_states(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer, register: object
) -> None:
    """Devices whose batches are pending together are judged in one round (one transaction,
    one COPY per table): each device's readings, cursor and states stay its own."""
    others = [await register(f"round-{n}") for n in range(3)]  # type: ignore[operator]
    writers = [writer, *(Writer(writer.stub, o.device_id, o.token) for o in others)]
    rule = threshold_rule("round", above=30, for_s=2)  # a for clock: a state per device
    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
    await asyncio.sleep(0.3)
    await asyncio.gather(
        *(w.temperatures([25, 31, 31, 31 + n, 20], start_s=600 + n) for n, w in enumerate(writers))
    )

    async def all_cleared() -> bool:
        found = await alerts_of(alerts_stub, "round")
        return len(found) == len(writers) and all(a.state == A.ALERT_STATE_CLEARED_UNACK for a in found)

    await wait_until(all_cleared, 15, "an alert per device, raised and cleared")
    found = {a.device_id: a for a in await alerts_of(alerts_stub, "round")}
    for n, w in enumerate(writers):
        alert = found[w.device_id]
        assert alert.first_time.seconds - START == 601 + n  # held from its own first crossing
        assert (alert.count, alert.last_value) == (3, 31 + n)


class _FailingPool:
    """The evaluator's pool, whose next acquire fails once when armed: the database away."""

    def __init__(self, pool: object) -> None:
        self._pool = pool
        self.armed = False

    def acquire(self) -> object:
        if self.armed:
            self.armed = False
            raise OSError("connection refused (the test's database is away)")
        return self._pool.acquire()  # type: ignore[attr-defined]


async def test_a_round_that_fails_is_judged_again_though_no_signal_follows(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer, control: ControlServer
) -> None:
    assert control.alerting is not None
    evaluator = control.alerting.evaluator
    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=threshold_rule("retry", above=30)))
    await asyncio.sleep(0.3)
    await writer.temperatures([25], start_s=700)  # judged: the device's labels are known now
    await wait_until(lambda: _judged(evaluator, 1), 10, "the first reading judged")
    failing = _FailingPool(evaluator._pool)
    evaluator._pool = failing  # type: ignore[assignment]
    failing.armed = True
    await writer.temperatures([31], start_s=701)  # its round fails; nothing is written after it
    raised = await until_alert(alerts_stub, "retry", A.ALERT_STATE_ACTIVE_UNACK)
    assert not failing.armed and raised.first_time.seconds - START == 701


async def _judged(evaluator: object, readings: int) -> bool:
    return bool(evaluator.judged >= readings)  # type: ignore[attr-defined]


async def test_bad_rules_are_refused_naming_the_field(alerts_stub: alert_pb2_grpc.AlertServiceStub) -> None:
    unknown = threshold_rule("typo", above=1)
    unknown.threshold.quantity = "temprature"
    error = await refusal(alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=unknown)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"alert_rule.threshold.quantity"}

    window = A.AlertRule(rule_id="too-wide", severity=A.ALERT_SEVERITY_MINOR)
    window.rate_of_change.quantity = "temperature"
    window.rate_of_change.window.FromSeconds(86401 * 2)
    window.rate_of_change.max_change = 1
    error = await refusal(alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=window)))
    assert "alert_rule.rate_of_change.window" in violations(error)

    nothing = A.AlertRule(rule_id="no-condition", severity=A.ALERT_SEVERITY_MINOR)
    error = await refusal(alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=nothing)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=threshold_rule("twice", above=1)))
    error = await refusal(
        alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=threshold_rule("twice", above=1)))
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = await refusal(alerts_stub.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=424242)))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_deleting_a_rule_clears_its_alerts_and_updating_one_restarts_it(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer
) -> None:
    await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=threshold_rule("warm", above=20)))
    await writer.temperatures([25], start_s=200)
    await until_alert(alerts_stub, "warm", A.ALERT_STATE_ACTIVE_UNACK)

    renamed = A.AlertRule(rule_id="warm", display_name="Greenhouse warm")
    mask = {"paths": ["display_name"]}
    updated = (
        await alerts_stub.UpdateAlertRule(A.UpdateAlertRuleRequest(alert_rule=renamed, update_mask=mask))
    ).alert_rule
    assert updated.display_name == "Greenhouse warm" and updated.threshold.above == 20
    assert (await alerts_of(alerts_stub, "warm"))[
        0
    ].state == A.ALERT_STATE_ACTIVE_UNACK  # a name changes nothing

    stricter = threshold_rule("warm", above=26)
    mask = {"paths": ["threshold"]}
    await alerts_stub.UpdateAlertRule(A.UpdateAlertRuleRequest(alert_rule=stricter, update_mask=mask))
    restarted = (await alerts_of(alerts_stub, "warm"))[0]
    assert (restarted.state, restarted.cleared_by) == (A.ALERT_STATE_CLEARED_UNACK, "rule changed")

    await writer.temperatures([27], start_s=201)
    await until_alert(alerts_stub, "warm", A.ALERT_STATE_ACTIVE_UNACK)
    deleted = await alerts_stub.DeleteAlertRule(A.DeleteAlertRuleRequest(rule_id="warm"))
    assert deleted.cleared_count == 1
    assert (await alerts_of(alerts_stub, "warm"))[0].cleared_by == "rule deleted"


async def test_the_leader_killed_mid_stream_loses_no_alert_and_raises_none_twice(
    database_url: str, ingest: IngestServer, device: Device, operator_key: str, tmp_path: Path
) -> None:
    env = {
        "SENSORMESH_DATABASE_URL": database_url,
        "SENSORMESH_CONTROL_LISTEN": "127.0.0.1:0",
        "SENSORMESH_ALERT_LEADER_RETRY": "PT0.2S",
    }
    first = ServiceProcess(["control"], env, tmp_path / "first.log")
    first.wait_serving()
    second = ServiceProcess(["control"], env, tmp_path / "second.log")
    second.wait_serving()
    try:
        await wait_until(_logged(first, "event=alert_leader_elected"), 15, "the first process leads")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{second.port}", interceptors=aio_interceptors(operator_key)
            ) as to_second,
        ):
            writer = Writer(ingest_pb2_grpc.IngestServiceStub(to_ingest), device.device_id, device.token)
            stub = alert_pb2_grpc.AlertServiceStub(to_second)
            await stub.CreateAlertRule(
                A.CreateAlertRuleRequest(alert_rule=threshold_rule("failover", above=30))
            )
            await asyncio.sleep(0.5)  # the leader reloads its rules on the rule's signal
            for batch in range(3):
                await writer.temperatures([31, 32], start_s=300 + batch * 2)
            await wait_until(_count(stub, "failover", 6), 15, "the first leader counted three batches")
            first.process.kill()  # SIGKILL: its lock goes with its connection
            for batch in range(3, 8):
                await writer.temperatures([31, 32], start_s=300 + batch * 2)
            await wait_until(
                _logged(second, "event=alert_leader_elected"), 15, "the second process took over"
            )
            await wait_until(_count(stub, "failover", 16), 15, "every reading counted once")
            found = await alerts_of(stub, "failover")
            assert [a.state for a in found] == [A.ALERT_STATE_ACTIVE_UNACK]  # one alert, raised once
    finally:
        for process in (first, second):
            process.stop()


def _logged(process: ServiceProcess, text: str) -> object:
    async def seen() -> bool:
        return text in process.log_path.read_text(errors="replace")

    return seen


async def test_a_failing_input_and_thinning_raise_and_clear_as_the_agent_reports(
    alerts_stub: alert_pb2_grpc.AlertServiceStub, writer: Writer
) -> None:
    for rule_id, kind in (
        ("driver-down", A.AGENT_CONDITION_KIND_INPUT_FAILING),
        ("discarding", A.AGENT_CONDITION_KIND_THINNING),
    ):
        rule = A.AlertRule(rule_id=rule_id, severity=A.ALERT_SEVERITY_WARNING)
        rule.agent.kind = kind
        await alerts_stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
    await asyncio.sleep(0.3)  # the leader reloads its rules on their signal
    await upload(
        writer,
        statuses=[status("bme280", True, "OSError: [Errno 121] Remote I/O error")],
        thinned=[thinning("sim-imu", 500, 0)],
        start_s=400,
    )
    down = await until_alert(alerts_stub, "driver-down", A.ALERT_STATE_ACTIVE_UNACK)
    assert (down.sensor, down.message) == ("bme280", "input bme280 is failing")
    thinned = await until_alert(alerts_stub, "discarding", A.ALERT_STATE_ACTIVE_UNACK)
    assert (thinned.sensor, thinned.count) == ("sim-imu", 500)

    await upload(writer, statuses=[status("bme280", False)], start_s=401)
    await until_alert(alerts_stub, "driver-down", A.ALERT_STATE_CLEARED_UNACK)
    await until_alert(alerts_stub, "discarding", A.ALERT_STATE_CLEARED_UNACK)


async def test_a_silence_raises_and_the_next_reading_clears(
    database_url: str, ingest: IngestServer, device: Device, operator_key: str
) -> None:
    settings = control_settings(database_url, alert_no_data_interval=timedelta(seconds=1))
    control = await start_control_server(settings, database_url=database_url)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
            grpc.aio.insecure_channel(
                f"127.0.0.1:{control.port}", interceptors=aio_interceptors(operator_key)
            ) as ch,
        ):
            stub = alert_pb2_grpc.AlertServiceStub(ch)
            writer = Writer(ingest_pb2_grpc.IngestServiceStub(to_ingest), device.device_id, device.token)
            rule = A.AlertRule(rule_id="gone-quiet", severity=A.ALERT_SEVERITY_CRITICAL)
            rule.no_data.silence.FromSeconds(10)
            await stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
            now = time.time() - START
            await writer.temperatures([20], start_s=now - 30)  # the last reading, 30 s ago
            quiet = await until_alert(stub, "gone-quiet", A.ALERT_STATE_ACTIVE_UNACK)
            assert quiet.sensor == "" and "no reading for" in quiet.message
            await writer.temperatures([20], start_s=time.time() - START)
            await until_alert(stub, "gone-quiet", A.ALERT_STATE_CLEARED_UNACK)
    finally:
        await control.stop(0.5)


async def test_a_scoped_viewer_sees_only_its_devices_alerts(
    alerts_stub: alert_pb2_grpc.AlertServiceStub,
    writer: Writer,
    database_url: str,
    control: ControlServer,
    register: object,
) -> None:
    other = await register("elsewhere")  # type: ignore[operator]
    await alerts_stub.CreateAlertRule(
        A.CreateAlertRuleRequest(alert_rule=threshold_rule("anywhere", above=30))
    )
    await asyncio.sleep(0.3)
    theirs = Writer(writer.stub, other.device_id, other.token)
    await writer.temperatures([35], start_s=500)
    await theirs.temperatures([35], start_s=500)
    await wait_until(_alerts_count(alerts_stub, 2), 15, "both devices' alerts")
    key = await make_key(
        database_url, "scoped", ROLE_VIEWER, scope=DeviceScope(frozenset({writer.device_id}))
    )
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{control.port}", interceptors=aio_interceptors(key)
    ) as channel:
        scoped = alert_pb2_grpc.AlertServiceStub(channel)
        mine = (await scoped.ListAlerts(A.ListAlertsRequest())).alerts
        assert [a.device_id for a in mine] == [writer.device_id]
        hidden = next(a for a in await alerts_of(alerts_stub, "anywhere") if a.device_id == other.device_id)
        error = await refusal(scoped.GetAlert(A.GetAlertRequest(alert_id=hidden.alert_id)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await refusal(scoped.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=mine[0].alert_id)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # a viewer reads; operators acknowledge


def _alerts_count(stub: alert_pb2_grpc.AlertServiceStub, count: int) -> object:
    async def counted() -> bool:
        return len((await stub.ListAlerts(A.ListAlertsRequest())).alerts) == count

    return counted
