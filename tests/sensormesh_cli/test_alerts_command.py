"""`sensormesh alerts` against real ingest and control processes: rules from flags and from JSON,
an alert raised by readings, acknowledged and cleared from the command line."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from sensormesh.v1 import ingest_pb2_grpc

from sensormesh_cli.main import main
from sensormesh_core.storage.registry import create_device
from tests.control_service.alerting_support import Writer
from tests.sensormesh_cli.conftest import Services
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.timeout(120)]


def _client(services: Services) -> list[str]:
    return ["--server", services.control, "--api-key-file", str(services.admin_key_file)]


async def _run(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def test_rules_from_flags_and_json_an_alert_raised_acknowledged_and_cleared(
    services: Services, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    device_id = f"cli-alerts-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(services.database_url)
    try:
        _, token = await create_device(conn, device_id)
    finally:
        await conn.close()
    rule_id = f"hot-{uuid.uuid4().hex[:6]}"
    create = ["alerts", "rules", "create", rule_id, "--quantity", "temperature", "--above", "30"]
    create += ["--for", "0s", "--hysteresis", "1", "--severity", "critical", "--devices", device_id]
    assert await _run([*create, *_client(services)]) == 0
    assert f"rule {rule_id} created: temperature above 30, critical" in capsys.readouterr().out

    spec = tmp_path / "quiet.json"
    spec.write_text(json.dumps({"severity": "ALERT_SEVERITY_MINOR", "noData": {"silence": "600s"}}))
    assert (
        await _run(["alerts", "rules", "create", f"quiet-{rule_id}", "--from", str(spec), *_client(services)])
        == 0
    )
    assert await _run(["alerts", "rules", "list", *_client(services)]) == 0
    listing = capsys.readouterr().out
    assert rule_id in listing and "no reading for 600s, minor" in listing

    async with grpc.aio.insecure_channel(services.ingest) as channel:
        writer = Writer(ingest_pb2_grpc.IngestServiceStub(channel), device_id, token)
        await asyncio.sleep(0.5)  # the evaluator loads the new rules on their signal
        await writer.temperatures([35], start_s=0)

        async def raised() -> bool:
            await _run(["alerts", "list", "--device", device_id, "--json", *_client(services)])
            return bool(json.loads(capsys.readouterr().out).get("alerts"))

        await wait_until(raised, 15, "the alert listed")
    assert await _run(["alerts", "list", "--state", "active", "--device", device_id, *_client(services)]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if rule_id in line)
    alert_id = row[0]
    assert row[1:4] == ["ACTIVE_UNACK", "critical", rule_id]
    assert await _run(["alerts", "ack", alert_id, *_client(services)]) == 0
    assert capsys.readouterr().out.strip() == f"alert {alert_id}: ACTIVE_ACK"
    assert await _run(["alerts", "clear", alert_id, *_client(services)]) == 0
    assert capsys.readouterr().out.strip() == f"alert {alert_id}: CLEARED_ACK"
    assert await _run(["alerts", "show", alert_id, *_client(services)]) == 0
    shown = capsys.readouterr().out
    assert "cleared by key:cli-tests-admin" in shown.replace("  ", " ") or "by key:cli-tests-admin" in shown
    assert await _run(["alerts", "rules", "delete", rule_id, *_client(services)]) == 0
    assert "0 active alert(s) cleared" in capsys.readouterr().out


async def test_conflicting_flags_and_a_bad_rule_are_refused_with_a_message(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    both = [
        "alerts",
        "rules",
        "create",
        "two",
        "--quantity",
        "temperature",
        "--above",
        "1",
        "--no-data",
        "5m",
    ]
    assert await _run([*both, *_client(services)]) == 2
    assert "give one condition" in capsys.readouterr().err
    typo = ["alerts", "rules", "create", "typo", "--quantity", "temprature", "--above", "1"]
    assert await _run([*typo, *_client(services)]) == 1
    assert "alert_rule.threshold.quantity" in capsys.readouterr().err
