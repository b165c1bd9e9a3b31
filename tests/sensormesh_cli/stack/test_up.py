"""`sensormesh up` end to end, as a user runs it: a real subprocess on free ports in a fresh folder.

Start (embedded PostgreSQL, migrations, ingest, query, Envoy, three simulated
devices), run the commands it prints exactly as printed, stop with Ctrl-C,
check that no process is left, start again and find the data, devices,
tokens and admin key of the first run. The test's own REST calls send the
admin key `sensormesh up` wrote, as the printed commands do.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from sensormesh_core.image_headers import JPEG, image_size
from tests.sensormesh_cli.stack.up_process import Ports, UpProcess, gone, postmaster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

START_TIMEOUT_S = 180  # the first start initialises PostgreSQL; on a busy 2-core machine that takes a while


def _run(command: str, cwd: Path) -> str:
    """A printed command through bash, exactly as printed."""
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _first_output(command: str, cwd: Path, fragment: str, timeout: float = 30.0) -> str:
    """Start a streaming command, read until `fragment` appears, stop it. A live feed through
    Envoy is one JSON array without line breaks, so this reads whatever bytes arrive."""
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, stdout=subprocess.PIPE)
    seen = ""
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while fragment not in seen and (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([fd], [], [], remaining)
            chunk = os.read(fd, 65536) if readable else b""
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    finally:
        process.terminate()
        process.wait(10)
    assert fragment in seen, f"{command} printed:\n{seen}"
    return seen


def _pick(commands: list[str], *fragments: str) -> str:
    matches = [c for c in commands if all(f in c for f in fragments)]
    assert len(matches) == 1, (fragments, commands)
    return matches[0]


def _admin(data_dir: Path) -> dict[str, str]:
    """Headers with the admin key `sensormesh up` wrote in `data_dir`."""
    return {"authorization": f"Bearer {(data_dir / 'admin.key').read_text().strip()}"}


def _temperature_points(base: str, headers: dict[str, str], start: datetime, end: datetime) -> int:
    params = {
        "quantities": "temperature",
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": end.isoformat().replace("+00:00", "Z"),
        "pageSize": "100000",
    }
    body = httpx.get(
        f"{base}/v1/devices/greenhouse-pi/readings", params=params, headers=headers, timeout=30
    ).json()
    return sum(len(series["points"]) for series in body["series"])


def _check_link_health(commands: list[str], cwd: Path) -> None:
    """The simulated BLE sensor's battery and signal in its latest readings, over REST, and
    its device first in the fleet sorted by lowest battery (the only device with one)."""
    deadline = time.monotonic() + 30
    while True:  # the sensor reports every 10 s; its first report came with its first reading
        link = json.loads(_run(_pick(commands, "curl", "sensors=ble:sim-thermometer"), cwd))
        shown = {(v["sensor"], v["quantity"], v["unit"]) for v in link.get("values", [])}
        if len(shown) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown == {
        ("ble:sim-thermometer", "battery_level", "%"),
        ("ble:sim-thermometer", "signal_strength", "dB[mW]"),
    }, link
    assert all(-127 <= v["value"] <= 100 for v in link["values"])
    fleet = json.loads(_run(_pick(commands, "curl", "order_by=lowest_battery_level.value"), cwd))["devices"]
    assert fleet[0]["deviceId"] == "greenhouse-pi", fleet
    assert fleet[0]["lowestBatteryLevel"]["sensor"] == "ble:sim-thermometer"
    assert fleet[0]["weakestSignalStrength"]["unit"] == "dB[mW]"
    assert all("lowestBatteryLevel" not in d for d in fleet[1:])


def _check_latest_frame(command: str, cwd: Path) -> None:
    """The simulated camera's latest frame, fetched as the banner says, is a 640x480 JPEG."""
    deadline = time.monotonic() + 30
    while True:
        _run(command, cwd)
        data = (cwd / "latest.jpg").read_bytes()
        if data.startswith(b"\xff\xd8") or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the camera's first frame is still on its way
    assert image_size(JPEG, data) == (640, 480), data[:200]


def _check_printed_commands(up: UpProcess, cwd: Path) -> None:
    commands = up.commands()
    list_devices = next(c for c in commands if c.startswith("curl") and c.endswith("/v1/devices"))
    listed = json.loads(_run(list_devices, cwd))
    assert {d["deviceId"] for d in listed["devices"]} == {"greenhouse-pi", "vibration-pi", "soil-node"}
    url = list_devices.split()[-1]
    ca = cwd / ".sensormesh" / "tls" / "ca.pem"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if url.startswith("https") else True
    assert httpx.get(url, timeout=10, verify=verify).status_code == 401  # as its title says, keyless
    device = json.loads(_run(next(c for c in commands if c.endswith("/v1/devices/greenhouse-pi")), cwd))
    assert {s["name"] for s in device["device"]["sensors"]} >= {"sim-environment"}
    every_latest = next(c for c in commands if c.startswith("curl") and c.endswith("readings:latest"))
    latest = json.loads(_run(every_latest, cwd))
    assert {v["quantity"] for v in latest["values"]} >= {"temperature", "relative_humidity", "pressure"}
    _check_link_health(commands, cwd)
    buckets = json.loads(_run(_pick(commands, "curl", "interval=10s"), cwd))["series"][0]["buckets"]
    assert buckets and int(buckets[-1]["count"]) > 0
    (columns,) = json.loads(_run(_pick(commands, "curl", "view=READINGS_VIEW_COLUMNS"), cwd))["columns"]
    assert columns["quantity"] == "acceleration_z" and columns["counts"][-1] > 0
    assert len(columns["timeMicros"]) == len(columns["means"]) > 0
    assert '"timeMicros"' in _run(_pick(commands, "buf curl", "ListReadings"), cwd)
    written = json.loads(_run(_pick(commands, "curl", "readings:write"), cwd))
    assert written["acceptedCount"] == "1"
    dashboard = json.loads(_run(_pick(commands, "curl", "/v1/apiKeys"), cwd))
    assert dashboard["key"].startswith("smak_") and dashboard["apiKey"]["role"] == "ROLE_VIEWER"
    sent = json.loads(_run(_pick(commands, "curl", '"status"'), cwd))["command"]
    assert sent["state"] == "COMMAND_STATE_QUEUED" and sent["deviceId"] == "greenhouse-pi"
    ping = _run(_pick(commands, "commands send greenhouse-pi ping --wait"), cwd)
    assert "SUCCEEDED in " in ping and '"agent_time"' in ping, ping
    list_commands = next(c for c in commands if c.endswith("/greenhouse-pi/commands") and " -d " not in c)
    listed_commands = json.loads(_run(list_commands, cwd))["commands"]
    status = next(c for c in listed_commands if c["commandId"] == sent["commandId"])
    assert status["state"] == "COMMAND_STATE_SUCCEEDED" and "buffer" in status["result"], status
    _first_output(_pick(commands, "curl", "readings:watch"), cwd, '"sim-environment"')
    _check_demo_alert(commands, cwd)
    _check_latest_frame(_pick(commands, "curl", "frames:latest"), cwd)
    assert '"values"' in _run(_pick(commands, "buf curl", "--schema"), cwd)
    assert "sensormesh.v1.QueryService/WatchReadings" in _run(_pick(commands, "--list-methods"), cwd)
    assert "soil-node" in _run(_pick(commands, "buf curl", "ListDevices"), cwd)
    assert "SERVING" in _run(_pick(commands, "Health/Check"), cwd)
    devices_list = next(c for c in commands if "devices list" in c and "--order-by" not in c)
    assert "3 devices" in _run(devices_list, cwd)
    by_battery = _run(_pick(commands, "devices list --order-by battery"), cwd).splitlines()
    assert by_battery[1].startswith("greenhouse-pi") and " %  " in by_battery[1], by_battery
    keys = _run(_pick(commands, "keys list"), cwd)
    assert "local-admin" in keys and "dashboard" in keys
    assert "AccessService/CreateApiKey" in _run(_pick(commands, "sensormesh audit"), cwd)
    _first_output(_pick(commands, "watch greenhouse-pi"), cwd, "temperature=")


def _check_demo_alert(commands: list[str], cwd: Path) -> None:
    """Within a minute the heat-spike rule raises an alert on the simulated heat spikes; it is
    acknowledged through REST, as the README shows. The low-battery rule is there beside it."""
    alerts_curl = _pick(commands, "curl", "/v1/alerts?")
    get, base = alerts_curl.split(" '")[0], alerts_curl.split("'")[1].split("/v1/")[0]  # curl -s -H "..."
    rules = json.loads(_run(f"{get} {base}/v1/alertRules", cwd))["alertRules"]
    assert {r["ruleId"] for r in rules} == {"greenhouse-heat-spike", "sensor-battery-low"}, rules
    spikes: list[dict[str, object]] = []
    deadline = time.monotonic() + 70
    while not spikes and time.monotonic() < deadline:
        listed = json.loads(_run(alerts_curl, cwd)).get("alerts", [])
        spikes = [a for a in listed if a["ruleId"] == "greenhouse-heat-spike"]
        if not spikes:
            time.sleep(1)
    assert spikes, "no heat-spike alert within a minute"
    alert = spikes[0]
    assert alert["deviceId"] == "greenhouse-pi"
    cli = _run(_pick(commands, "alerts list"), cwd)
    assert "greenhouse-heat-spike" in cli and "warning" in cli
    acked = json.loads(_run(f"{get} -d '{{}}' {base}/v1/alerts/{alert['alertId']}:acknowledge", cwd))["alert"]
    assert acked["state"] in ("ALERT_STATE_ACTIVE_ACK", "ALERT_STATE_CLEARED_ACK")


def test_up_serves_the_printed_commands_stops_cleanly_and_resumes_with_its_data(tmp_path: Path) -> None:
    cwd = tmp_path / "fresh-clone"
    cwd.mkdir()
    ports = Ports()
    base = f"http://127.0.0.1:{ports.http}"
    up = UpProcess(cwd, ports.flags())
    try:
        up.wait_for("Ctrl-C stops everything", START_TIMEOUT_S)
        assert "greenhouse-pi (created)" in up.output
        assert "first readings stored  3 of 3 devices" in up.output
        _check_printed_commands(up, cwd)

        # A second stack on the same data folder is refused before it starts anything.
        other = subprocess.run(
            [*UpProcess.command(), *Ports().flags()], cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert other.returncode == 1 and "another `sensormesh up`" in other.stdout, (
            other.stdout + other.stderr
        )

        admin = _admin(cwd / ".sensormesh")
        first_start = datetime.now(UTC) - timedelta(minutes=5)
        mark = datetime.now(UTC)
        before = _temperature_points(base, admin, first_start, mark)
        sequence = httpx.get(f"{base}/v1/devices/vibration-pi", headers=admin, timeout=10).json()["device"][
            "committedSequence"
        ]
        children = up.descendants()
        server = postmaster(cwd / ".sensormesh")
        assert (
            server is not None and len(children) >= 7
        )  # ingest, query, control, Envoy, 2 agents, direct device

        assert up.interrupt() == 0, up.output
        assert "PostgreSQL stopped" in up.output
        assert [c for c in children if not gone(c)] == []
        assert gone(server)
    finally:
        up.close()

    tokens = sorted((cwd / ".sensormesh" / "devices").glob("*.token"))
    assert [t.stat().st_mode & 0o777 for t in tokens] == [0o600] * 3
    assert (cwd / ".sensormesh" / "admin.key").stat().st_mode & 0o777 == 0o600

    again = UpProcess(cwd, ports.flags())
    try:
        again.wait_for("Ctrl-C stops everything", START_TIMEOUT_S)
        assert "greenhouse-pi (reused), vibration-pi (reused), soil-node (reused)" in again.output
        assert _admin(cwd / ".sensormesh") == admin  # the key of the first start, still accepted
        assert len(httpx.get(f"{base}/v1/devices", headers=admin, timeout=10).json()["devices"]) == 3
        assert _temperature_points(base, admin, first_start, mark) >= before > 0
        resumed = httpx.get(f"{base}/v1/devices/vibration-pi", headers=admin, timeout=10).json()["device"][
            "committedSequence"
        ]
        assert int(resumed) > int(sequence)
        assert again.interrupt() == 0, again.output
    finally:
        again.close()


def test_up_with_tls_serves_every_port_over_tls_and_its_devices_verify_it(tmp_path: Path) -> None:
    """`--tls`: a local CA made in the data folder; Envoy, ingest and query serve TLS; the agents
    (straight to ingest) and the direct device (REST through Envoy) verify it, so their first
    readings arriving proves it; the printed commands, all with the CA, work as printed."""
    ports = Ports()
    up = UpProcess(tmp_path, [*ports.flags(), "--tls"])
    try:
        up.wait_for("Ctrl-C stops everything", START_TIMEOUT_S)
        assert "first readings stored  3 of 3 devices" in up.output
        assert f"https://127.0.0.1:{ports.http}  (Envoy)" in up.output
        assert "TLS CA" in up.output and ".sensormesh/tls/ca.pem" in up.output
        _check_printed_commands(up, tmp_path)
        with pytest.raises(httpx.HTTPError):  # plaintext to the TLS listener
            httpx.get(f"http://127.0.0.1:{ports.http}/v1/devices", timeout=5)
        assert up.interrupt() == 0, up.output
    finally:
        up.close()
    folder = tmp_path / ".sensormesh" / "tls"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.glob("*.key")} == {
        "ca.key": 0o600,
        "server.key": 0o600,
    }
    agent = (tmp_path / ".sensormesh" / "agents" / "greenhouse-pi.toml").read_text()
    assert "tls = true" in agent and str(folder / "ca.pem") in agent


def test_up_refuses_a_taken_port_before_starting_anything(tmp_path: Path) -> None:
    ports = Ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.http))
        taken.listen()
        result = subprocess.run(
            [*UpProcess.command(), *ports.flags()], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"port {ports.http} (Envoy) is taken" in result.stdout and "--http" in result.stdout
    assert not (tmp_path / ".sensormesh" / "postgres").exists()


@pytest.mark.storage
def test_up_with_a_database_url_and_no_agent_leaves_that_server_running(
    database_url: str, tmp_path: Path
) -> None:
    ports = Ports()
    up = UpProcess(tmp_path, [*ports.flags(), "--no-agent", "--database-url", database_url])
    try:
        up.wait_for("Ctrl-C stops everything", START_TIMEOUT_S)
        assert "the configured database" in up.output and "simulated" not in up.output
        admin = _admin(tmp_path / ".sensormesh")
        listed = httpx.get(f"http://127.0.0.1:{ports.http}/v1/devices", headers=admin, timeout=10).json()
        assert listed["devices"] == []
        assert up.interrupt() == 0, up.output
        assert "database released" in up.output
    finally:
        up.close()
    assert not (tmp_path / ".sensormesh" / "postgres").exists()
    with psycopg.connect(database_url) as conn:  # the server we were given still runs
        assert conn.execute("SELECT 1").fetchone() == (1,)
