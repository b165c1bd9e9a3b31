"""Alert notifications leave through the outbox: to the real Alertmanager (firing, then resolved),
and to a signed webhook that is down for a while (retried until it takes them, in order)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import grpc
import httpx
import pytest
from pydantic import SecretStr
from sensormesh.v1 import alert_pb2_grpc, ingest_pb2_grpc

from control_service.alerting.outbox import Outbox
from control_service.alerting.receivers import SIGNATURE_HEADER, Webhook, verify
from control_service.server import ControlServer, start_control_server
from ingest_service.server import IngestServer
from sensormesh_cli.bearer import aio_interceptors
from tests.control_service.alerting_support import A, Writer, threshold_rule, until_alert
from tests.control_service.conftest import Device, control_settings
from tests.support.alertmanager import Alertmanager
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]
SECRET = "test-webhook-secret"


class Receiver(BaseHTTPRequestHandler):
    """Answers 503 to the first `down` requests, then 200; keeps what it took."""

    down = 0
    taken: ClassVar[list[tuple[dict[str, Any], str]]] = []
    refused = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.refused < Receiver.down:
            Receiver.refused += 1
            self.send_response(503)
            self.end_headers()
            return
        if not verify(SECRET.encode(), body, self.headers.get(SIGNATURE_HEADER, "")):
            self.send_response(401)
            self.end_headers()
            return
        Receiver.taken.append((json.loads(body), self.headers["X-Sensormesh-Event"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.down, Receiver.taken, Receiver.refused = 2, [], 0
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path / "alertmanager")
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture
async def notifying(
    database_url: str, alertmanager: Alertmanager, webhook: str
) -> AsyncIterator[ControlServer]:
    settings = control_settings(
        database_url,
        alertmanager_urls=[alertmanager.url],
        alert_webhook_urls=[webhook],
        alert_webhook_secret=SecretStr(SECRET),
        alert_link_base="https://sensormesh.example",
    )
    server = await start_control_server(settings, database_url=database_url)
    try:
        assert server.alerting is not None
        await asyncio.wait_for(server.alerting.leadership.elected.wait(), 10)
        yield server
    finally:
        await server.stop(0.5)


async def test_alertmanager_gets_the_alert_firing_then_resolved_and_the_webhook_every_change_in_order(
    notifying: ControlServer,
    ingest: IngestServer,
    device: Device,
    operator_key: str,
    alertmanager: Alertmanager,
) -> None:
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as to_ingest,
        grpc.aio.insecure_channel(
            f"127.0.0.1:{notifying.port}", interceptors=aio_interceptors(operator_key)
        ) as ch,
    ):
        stub = alert_pb2_grpc.AlertServiceStub(ch)
        writer = Writer(ingest_pb2_grpc.IngestServiceStub(to_ingest), device.device_id, device.token)
        rule = threshold_rule("too-hot", above=30, severity=A.ALERT_SEVERITY_CRITICAL)
        rule.display_name = "Greenhouse too hot"
        await stub.CreateAlertRule(A.CreateAlertRuleRequest(alert_rule=rule))
        await asyncio.sleep(0.3)
        await writer.temperatures([35], start_s=0)
        raised = await until_alert(stub, "too-hot", A.ALERT_STATE_ACTIVE_UNACK)

        async def firing() -> bool:
            return bool(await asyncio.to_thread(alertmanager.alerts))

        await wait_until(firing, 15, "Alertmanager has the alert")
        (fired,) = await asyncio.to_thread(alertmanager.alerts)
        assert fired["labels"] == {
            "alertname": "too-hot",
            "rule": "too-hot",
            "device": device.device_id,
            "sensor": "bme280",
            "quantity": "temperature",
            "severity": "critical",
            "source": "sensormesh",
        }
        assert fired["annotations"]["rule_name"] == "Greenhouse too hot"
        assert fired["generatorURL"] == f"https://sensormesh.example/v1/alerts/{raised.alert_id}"

        await stub.AcknowledgeAlert(A.AcknowledgeAlertRequest(alert_id=raised.alert_id))
        await writer.temperatures([20], start_s=1)
        await until_alert(stub, "too-hot", A.ALERT_STATE_CLEARED_ACK)

        async def resolved() -> bool:
            return not await asyncio.to_thread(alertmanager.alerts, active="true")

        await wait_until(resolved, 15, "Alertmanager resolved the alert")

        async def all_taken() -> bool:
            return len(Receiver.taken) == 3

        await wait_until(all_taken, 20, "the webhook took every change once it was back")
    assert Receiver.refused == 2  # down twice: retried
    assert [event for _, event in Receiver.taken] == ["raised", "acknowledged", "cleared"]
    body = Receiver.taken[0][0]
    assert body["alert"]["alert_id"] == raised.alert_id and body["rule_name"] == "Greenhouse too hot"
    assert body["link"] == f"https://sensormesh.example/v1/alerts/{raised.alert_id}"


async def test_a_notification_no_receiver_takes_is_kept_as_dead_after_the_give_up(
    database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO alert_notifications (alert_id, receiver, payload, create_time) "
        'VALUES (1, $1, \'{"event": "raised", "alert": {"alert_id": 1}}\', now() - interval \'2 seconds\')',
        "webhook:http://127.0.0.1:9/nobody",
    )
    down = Webhook("http://127.0.0.1:9/nobody", b"secret", "http://x")
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool,
        httpx.AsyncClient() as client,
    ):
        outbox = Outbox(pool, [down], give_up=timedelta(seconds=1))
        assert await outbox.deliver_due(client) == 0
    row = await db.fetchrow("SELECT attempts, dead_time, delivered_time, last_error FROM alert_notifications")
    assert row["attempts"] == 1 and row["dead_time"] is not None and row["delivered_time"] is None
    assert "ConnectError" in row["last_error"]
