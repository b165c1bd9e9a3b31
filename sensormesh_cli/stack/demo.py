"""The simulated devices of `sensormesh up`, registered through the real DeviceService.

Three devices, one of each kind a fleet has:
- `greenhouse-pi`: a gateway with an environment sensor (1 s), a battery BLE
  thermometer (`ble:sim-thermometer`, 5 s, its battery draining over two hours
  and its signal strength every 10 s), system readings (10 s) and a simulated
  camera (a 640x480 test card with the time on it every 5 s), uploading
  through the agent;
- `vibration-pi`: a gateway with a 100 Hz IMU on a running machine;
- `soil-node`: a direct device (a microcontroller) writing generic
  measurements over REST through Envoy.

On the first start each is created with CreateDevice and its token is kept in
`<data>/devices/<id>.token` (mode 0600, folder 0700); later starts reuse it.
The tokens are checked against the ingest service: a token file that is gone
or refused (another database, a rotation) gets a new token by
RotateDeviceToken; a disabled device is reported instead of simulated. The
stack calls DeviceService with its own admin key, so a demo device that was
deleted is registered again (`reregister`, an audited admin act).
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sensormesh.v1 import alert_pb2, alert_pb2_grpc, device_pb2, device_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from sensormesh_core.tokens import write_token_file

log = logging.getLogger(__name__)

LABELS = {"origin": "sensormesh-up", "simulated": "true"}
WATCHED_GATEWAY = "greenhouse-pi"
# The demo's wireless sensor: its battery and signal strength show in greenhouse-pi's latest readings.
BLE_SENSOR = "ble:sim-thermometer"


@dataclass(frozen=True)
class DemoDevice:
    """A simulated device: how it is registered and what it measures."""

    device_id: str
    display_name: str
    description: str
    type: int  # device_pb2.DeviceType
    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # agent inputs (gateways)

    @property
    def is_gateway(self) -> bool:
        return self.type == device_pb2.DEVICE_TYPE_GATEWAY


DEMO_DEVICES = (
    DemoDevice(
        "greenhouse-pi",
        "Greenhouse gateway",
        "Simulated Raspberry Pi with an environment sensor (BME280-like), a battery BLE thermometer, "
        "its own system readings and a camera (a test card with the time on it).",
        device_pb2.DEVICE_TYPE_GATEWAY,
        {
            "simulated": [
                # Every 45 s a 6 °C heat spike: what the demo alert rule catches.
                {
                    "kind": "environment",
                    "sensor": "sim-environment",
                    "interval": "1s",
                    "seed": 11,
                    "excursion_every": "45s",
                },
                {
                    "kind": "environment",
                    "sensor": BLE_SENSOR,
                    "interval": "5s",
                    "seed": 13,
                    "link_interval": "10s",
                    "battery_life": "2h",
                },
                {"kind": "system", "sensor": "sim-system", "interval": "10s", "seed": 12},
            ],
            # One frame every 5 s: a live view that visibly moves. At 640x480 a test card is about
            # 26 KB, so a day of frames is about 450 MB, kept for the 7-day frame retention.
            "camera": [{"source": "simulated", "name": "greenhouse-cam", "interval": "5s"}],
        },
    ),
    DemoDevice(
        "vibration-pi",
        "Vibration gateway",
        "Simulated Raspberry Pi with a 100 Hz IMU (MPU-6050-like) on a motor running at 1770 rpm.",
        device_pb2.DEVICE_TYPE_GATEWAY,
        {"simulated": [{"kind": "imu", "sensor": "sim-imu", "interval": "10ms", "seed": 21}]},
    ),
    DemoDevice(
        "soil-node",
        "Soil node",
        "Simulated microcontroller writing soil moisture and soil temperature over REST.",
        device_pb2.DEVICE_TYPE_DIRECT,
    ),
)


class TokenState(enum.StrEnum):
    """What the stack found for a device's token."""

    CREATED = "created"  # registered now; token written
    REUSED = "reused"  # registered before; the kept token authenticates
    ROTATED = "rotated"  # registered, but its token file was gone or refused: a new token now
    DISABLED = "disabled"  # registered and disabled: not simulated


@dataclass(frozen=True)
class DeviceToken:
    device: DemoDevice
    state: TokenState
    token_path: Path

    @property
    def usable(self) -> bool:
        return self.state is not TokenState.DISABLED

    def problem(self) -> str:
        """What is wrong and how to fix it, for a device that cannot be simulated."""
        return (
            f"{self.device.device_id} is disabled, so it is not simulated; "
            f"`sensormesh devices update {self.device.device_id} --status active` enables it again"
        )


def token_folder(data_dir: Path) -> Path:
    folder = data_dir / "devices"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _exists(devices: device_pb2_grpc.DeviceServiceStub, device_id: str) -> bool:
    try:
        devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device_id), timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def _token_answer(ingest: ingest_pb2_grpc.IngestServiceStub, device_id: str, token: str) -> grpc.StatusCode:
    """OK, UNAUTHENTICATED (unknown token) or PERMISSION_DENIED (the device is disabled)."""
    request = ingest_pb2.GetUploadOffsetRequest(device_id=device_id)
    try:
        ingest.GetUploadOffset(request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return error.code()
        raise
    return grpc.StatusCode.OK


def ensure_device(
    device: DemoDevice,
    folder: Path,
    devices: device_pb2_grpc.DeviceServiceStub,
    ingest: ingest_pb2_grpc.IngestServiceStub,
) -> DeviceToken:
    """Create `device` unless it exists; give it a new token if its kept one does not work."""
    path = folder / f"{device.device_id}.token"
    if not _exists(devices, device.device_id):
        created = devices.CreateDevice(
            device_pb2.CreateDeviceRequest(
                reregister=True,  # a demo device deleted by hand comes back on the next start
                device=device_pb2.Device(
                    device_id=device.device_id,
                    display_name=device.display_name,
                    description=device.description,
                    type=device.type,  # type: ignore[arg-type]
                    labels=LABELS,
                ),
            ),
            timeout=10,
        )
        write_token_file(path, created.token)
        log.info("event=demo_device_created device_id=%s token_file=%s", device.device_id, path)
        return DeviceToken(device, TokenState.CREATED, path)
    answer = _token_answer(ingest, device.device_id, path.read_text().strip()) if path.exists() else None
    if answer is grpc.StatusCode.OK:
        return DeviceToken(device, TokenState.REUSED, path)
    if answer is grpc.StatusCode.PERMISSION_DENIED:
        return DeviceToken(device, TokenState.DISABLED, path)
    rotated = devices.RotateDeviceToken(
        device_pb2.RotateDeviceTokenRequest(device_id=device.device_id), timeout=10
    )
    write_token_file(path, rotated.token)
    log.info("event=demo_device_token_rotated device_id=%s token_file=%s", device.device_id, path)
    return DeviceToken(device, TokenState.ROTATED, path)


def agent_config(
    device: DemoDevice, token_path: Path, ingest_target: str, folder: Path, ca_file: Path | None = None
) -> Path:
    """Write the agent TOML for a simulated gateway; returns its path (rewritten every start).

    With `ca_file` the agent uploads over TLS and verifies ingest against that CA."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `sensormesh up` on every start; edits are overwritten.",
        f'device_id = "{device.device_id}"',
        f'token_file = "{token_path.resolve()}"',
        'stop_timeout = "5s"',
        "",
        "[uplink]",
        f'target = "{ingest_target}"',
        *(["tls = false"] if ca_file is None else ["tls = true", f'ca_file = "{ca_file.resolve()}"']),
        "",
        "[buffer]",
        f'path = "{(folder / f"{device.device_id}.sqlite3").resolve()}"',
        'disk_budget = "256MiB"',
    ]
    for kind, tables in device.inputs.items():
        for table in tables:
            lines += ["", f"[[inputs.{kind}]]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path = folder / f"{device.device_id}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def heat_spike_rule() -> alert_pb2.AlertRule:
    """The greenhouse's heat spikes (its simulated environment sensor jumps 6 °C every 45 s),
    so a new user sees an alert within a minute."""
    rule = alert_pb2.AlertRule(
        rule_id="greenhouse-heat-spike",
        display_name="Greenhouse heat spike",
        description=(
            "The greenhouse warmed by more than 4 °C within 10 s (sensormesh up's simulation does this every "
            "45 s). In a real greenhouse: check the vents and the heater."
        ),
        severity=alert_pb2.ALERT_SEVERITY_WARNING,
    )
    rule.devices.device_ids.append(WATCHED_GATEWAY)
    rule.rate_of_change.quantity = "temperature"
    rule.rate_of_change.window.FromSeconds(10)
    rule.rate_of_change.max_change = 4.0
    rule.rate_of_change.direction = alert_pb2.CHANGE_DIRECTION_RISE
    return rule


def low_battery_rule() -> alert_pb2.AlertRule:
    """The wireless thermometer's battery below 20 % for 5 minutes: its simulated battery
    drains over 2 hours, so this raises for about 20 minutes in every 2 hours and clears when
    the battery is replaced (5 % of hysteresis keeps a noisy reading near the limit from
    flapping). The rule every fleet of battery sensors needs first."""
    rule = alert_pb2.AlertRule(
        rule_id="sensor-battery-low",
        display_name="Sensor battery low",
        description="A wireless sensor's battery has been below 20 % for 5 minutes: replace or recharge it.",
        severity=alert_pb2.ALERT_SEVERITY_WARNING,
    )
    rule.devices.device_ids.append(WATCHED_GATEWAY)
    rule.sensors.append(BLE_SENSOR)
    rule.threshold.quantity = "battery_level"
    rule.threshold.below = 20.0
    rule.threshold.for_duration.FromSeconds(300)
    rule.threshold.hysteresis = 5.0
    return rule


# The alert rules `sensormesh up` adds, with what each watches (for its status line).
DEMO_RULES: tuple[tuple[alert_pb2.AlertRule, str], ...] = (
    (heat_spike_rule(), f"a heat spike on {WATCHED_GATEWAY}"),
    (low_battery_rule(), f"{BLE_SENSOR}'s battery below 20 %"),
)


def ensure_demo_rule(alerts: alert_pb2_grpc.AlertServiceStub, rule: alert_pb2.AlertRule) -> str:
    """Create a demo rule unless it exists (an operator may have changed it: kept as it is)."""
    try:
        alerts.GetAlertRule(alert_pb2.GetAlertRuleRequest(rule_id=rule.rule_id), timeout=10)
        return "kept"
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
    alerts.CreateAlertRule(alert_pb2.CreateAlertRuleRequest(alert_rule=rule), timeout=10)
    return "created"
