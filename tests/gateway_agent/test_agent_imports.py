"""`sensormesh agent` loads only what its configuration uses: its memory budget on a Pi is 60 MB.

A fresh process runs the real command (`sensormesh_cli.main`) through settings, telemetry and
`Agent.start` (buffer, inputs, channel, command link), then lists its modules instead of running.
What it must not hold unless configured: the OpenTelemetry SDK, exporters and gRPC
instrumentation (only when `OTEL_EXPORTER_OTLP_*` says to export), an input's or a command's
library (only when that input or command is configured), and what only the services use.
What it must never hold: pydantic and pydantic-settings, which the services' settings use and the
agent's do not (its options are msgspec structs, gateway_agent/options.py; pydantic is 11 MB of
the budget), nor python-dotenv (gateway_agent/env_overrides.py reads its environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
device_id = "pi-imports"
token = "not-used"
stop_timeout = "1s"
[uplink]
  target = "127.0.0.1:9"
  tls = false
[buffer]
  path = "{buffer}"
[[inputs.simulated]]
  kind = "imu"
  interval = "10ms"
[[inputs.cpu_temp]]
[[inputs.disk]]
"""

# The agent's start, up to where it would begin reading and uploading; then its modules.
PROGRAM = """
import json, sys
from gateway_agent.agent import Agent

async def listed(self):
    print(json.dumps(sorted(sys.modules)), flush=True)
    await self.close()

Agent.run = listed
from sensormesh_cli.main import main
sys.exit(main(["--log-level", "ERROR", "agent", "--config", sys.argv[1]]))
"""

NOT_CONFIGURED = [
    "opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation", "psutil",
    "protovalidate", "PIL", "linuxpy", "picamera2", "bleak", "smbus2", "aiomqtt", "gpiozero",
    "asyncpg", "sqlalchemy", "numpy", "httpx",
    "gateway_agent.inputs.bme280", "gateway_agent.inputs.mpu6050", "gateway_agent.inputs.ble_imu",
    "gateway_agent.inputs.mqtt", "gateway_agent.inputs.camera", "gateway_agent.commands.program",
    "gateway_agent.commands.mqtt", "gateway_agent.commands.gpio_output",
]  # fmt: skip


def _agent_modules(tmp_path: Path, **env: str) -> set[str]:
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(buffer=tmp_path / "buffer.sqlite3"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(config)],
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def _loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


def test_the_agent_loads_no_sdk_and_no_unconfigured_library(tmp_path: Path) -> None:
    modules = _agent_modules(tmp_path)
    assert "gateway_agent.inputs.simulated" in modules  # the listing is the started agent's
    assert [name for name in NOT_CONFIGURED if _loaded(modules, name)] == []


def test_the_agent_reads_its_settings_without_pydantic(tmp_path: Path) -> None:
    """The settings come from the file and an override from the environment, through the real
    command: still, neither pydantic, pydantic-settings nor python-dotenv (nor the services'
    settings) is loaded."""
    modules = _agent_modules(tmp_path, SENSORMESH_AGENT_UPLINK__GZIP="true")
    assert "gateway_agent.config" in modules
    assert [
        name
        for name in ("pydantic", "pydantic_core", "pydantic_settings", "dotenv", "sensormesh_core.config")
        if _loaded(modules, name)
    ] == []


def test_the_agent_loads_the_sdk_and_the_exporter_when_exporting(tmp_path: Path) -> None:
    modules = _agent_modules(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert _loaded(modules, "opentelemetry.sdk")
    assert _loaded(modules, "opentelemetry.exporter.otlp.proto.grpc")
    assert _loaded(modules, "opentelemetry.instrumentation.grpc")
