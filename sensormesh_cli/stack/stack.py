"""`sensormesh up`: start every piece of a deployment on this machine, in order, and stop them in reverse.

Start: database (embedded under the data folder, or the one given) ->
migrations and maintenance -> the admin key (`<data>/admin.key`, made on the
first start) -> ingest -> query -> control -> Envoy -> the simulated
devices' registration -> their agents and the direct device. Each program is
its own process (`sensormesh ingest`, `sensormesh query`, `sensormesh control`, `sensormesh agent`,
Envoy's binary), so the stack behaves like a deployment, and each writes its
log under `<data>/logs/`. Stop, on Ctrl-C, SIGTERM or a crashed service or
Envoy: the devices first (their last uploads still reach ingest), then Envoy,
then the services, then the database, each with a deadline after which it is
killed. A device that exits stops nothing (sensormesh_cli/stack/supervisor.py).

Children must be started from the main thread: on Linux they are tied to the
thread that forked them and get SIGTERM when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensormesh_cli.bearer import with_key
from sensormesh_cli.stack import demo
from sensormesh_cli.stack.admin_key import AdminKey, ensure_admin_key
from sensormesh_cli.stack.children import Child, sensormesh_argv
from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess
from sensormesh_cli.stack.examples import Endpoints, reachable
from sensormesh_cli.stack.preflight import DataFolderLock, Listener, check_ports
from sensormesh_cli.stack.readiness import wait_first_readings, wait_http, wait_serving
from sensormesh_cli.stack.settings import split_host_port
from sensormesh_cli.stack.status import Status, StepFailed
from sensormesh_cli.stack.transport import Transport
from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.database import Database, open_database

log = logging.getLogger(__name__)

SERVICE_START_TIMEOUT_S = 60.0
FIRST_READINGS_TIMEOUT_S = 30.0
# Seconds each tier gets to stop before what is left is killed.
STOP_DEVICES_S = 10.0
STOP_ENVOY_S = 5.0
STOP_SERVICES_S = 10.0
SERVICE_GRACE = "5"  # seconds open calls get when a service stops (within STOP_SERVICES_S)


@dataclass(frozen=True)
class StackOptions:
    """What to run and where; built from settings and flags by the command."""

    storage: StorageSettings
    endpoints: Endpoints
    simulate: bool = True
    tls: bool = False  # every port over TLS with the local CA (transport.py)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.storage.data_dir.resolve()

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


@dataclass
class Running:
    """What has been started, in start order; stopped in reverse by tier."""

    database: Database | None = None
    services: list[Child] = field(default_factory=list)
    envoy: EnvoyProcess | None = None
    devices: list[Child] = field(default_factory=list)
    tokens: list[demo.DeviceToken] = field(default_factory=list)
    admin_key: AdminKey | None = None

    def children(self) -> list[Child]:
        return [*self.devices, *self.services]


class LocalStack:
    """The stack's pieces, started by `start()` and stopped by `stop()` (also after a failed start)."""

    def __init__(self, options: StackOptions, status: Status) -> None:
        self.options = options
        self.status = status
        self.running = Running()
        self._lock = DataFolderLock(options.data_dir)
        self.transport = Transport()

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        o = self.options
        self._lock.acquire()
        check_ports(
            [
                Listener("Envoy", o.endpoints.http, "--http"),
                Listener("Envoy admin", o.endpoints.admin, "--admin"),
                Listener("ingest", o.endpoints.ingest, "--ingest"),
                Listener("query", o.endpoints.query, "--query"),
                Listener("control", o.endpoints.control, "--control"),
                Listener("console", o.endpoints.console, "--console"),
            ]
        )
        o.log_dir.mkdir(parents=True, exist_ok=True)
        self.transport = Transport.for_stack(o.data_dir, tls=o.tls)
        url = self._start_database()
        self._migrate(url)
        self._admin_key(url)
        env = {**o.extra_env, "SENSORMESH_DATABASE_URL": url, "SENSORMESH_DATA_DIR": str(o.data_dir)}
        env.update(self.transport.service_env())
        self._start_service("ingest", o.endpoints.ingest, "sensormesh.v1.IngestService", env)
        self._start_service("query", o.endpoints.query, "sensormesh.v1.QueryService", env)
        self._start_service("control", o.endpoints.control, "sensormesh.v1.CommandService", env)
        self._start_console()
        self._start_envoy()
        if o.simulate:
            self._register_devices()
            self._demo_alert_rule()
            self._start_devices()
            self._wait_first_readings()

    def _start_database(self) -> str:
        storage = self.options.storage
        embedded = storage.database_dsn() is None
        pgdata = self.options.data_dir / "postgres"
        first = embedded and not (pgdata / "PG_VERSION").exists()
        label = "PostgreSQL (embedded, first start: initialising)" if first else "PostgreSQL"
        with self.status.step(label) as details:
            self.running.database = open_database(storage)
            details.append(f"{server_version(self.running.database.url)}")
            details.append(f"data in {pgdata}" if embedded else "the configured database")
        return self.running.database.url

    def _migrate(self, url: str) -> None:
        from sensormesh_core.storage import migrate

        with self.status.step("schema migrations and maintenance") as details:
            before = migrate.current_revision(url)
            migrate.upgrade(url, timescaledb=self.options.storage.timescaledb)
            after = migrate.current_revision(url)
            details.append(f"revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
            report = asyncio.run(_maintain(url, self.options.storage))
            details.append(f"{report.backend.value} backend")
            if report.partitions_created:
                details.append(f"{len(report.partitions_created)} partitions created")

    def _admin_key(self, url: str) -> None:
        with self.status.step("admin API key") as details:
            self.running.admin_key = key = ensure_admin_key(url, self.options.data_dir)
            details.append(f"{'created' if key.created else 'kept'} in {key.path} (0600)")

    def _key(self) -> str | None:
        return self.running.admin_key.key if self.running.admin_key else None

    def _start_service(self, name: str, address: str, service: str, env: dict[str, str]) -> None:
        with self.status.step(f"{name} service on {address}"):
            argv = sensormesh_argv(name, "--listen", address)
            if name in ("query", "control"):
                argv += ["--grace", SERVICE_GRACE]
            extra = {"SENSORMESH_INGEST_SHUTDOWN_GRACE": f"PT{SERVICE_GRACE}S"} if name == "ingest" else {}
            child = Child(name, argv, env={**env, **extra}, log_path=self.options.log_dir / f"{name}.log")
            self.running.services.append(child)
            wait_serving(
                reachable(address), service, child, SERVICE_START_TIMEOUT_S, self.transport.credentials()
            )

    def _start_console(self) -> None:
        address = self.options.endpoints.console
        with self.status.step(f"web console's file server on {address}"):
            argv = sensormesh_argv("console", "--listen", address)
            child = Child("console", argv, env={}, log_path=self.options.log_dir / "console.log")
            self.running.services.append(child)
            wait_http(f"http://{reachable(address)}/", child, SERVICE_START_TIMEOUT_S)

    def _start_envoy(self) -> None:
        e = self.options.endpoints
        http_host, http_port = split_host_port(e.http)
        admin_host, admin_port = split_host_port(e.admin)
        options = EnvoyOptions(
            listen_address=http_host,
            listen_port=http_port,
            admin_address=admin_host,
            admin_port=admin_port,
            ingest=split_host_port(reachable(e.ingest)),
            query=split_host_port(reachable(e.query)),
            control=split_host_port(reachable(e.control)),
            console=split_host_port(reachable(e.console)),
            health_check_interval_s=1.0,
            tls=self.transport.listener_tls(),
            upstream_tls=self.transport.upstream_tls(),
        )
        with self.status.step(f"Envoy on {e.http} (admin {e.admin})"):
            # Its own process group, like the other children: Ctrl-C reaches only `sensormesh up`.
            self.running.envoy = EnvoyProcess(
                options, log_dir=self.options.log_dir, popen_options={"process_group": 0}
            )
            self.running.envoy.wait_ready(SERVICE_START_TIMEOUT_S)

    def _register_devices(self) -> None:
        folder = demo.token_folder(self.options.data_dir)
        with (
            self.status.step("simulated devices registered (DeviceService)") as details,
            with_key(self.transport.channel(reachable(self.options.endpoints.query)), self._key()) as query,
            self.transport.channel(reachable(self.options.endpoints.ingest)) as ingest,
        ):
            from sensormesh.v1 import device_pb2_grpc, ingest_pb2_grpc

            devices = device_pb2_grpc.DeviceServiceStub(query)
            uploads = ingest_pb2_grpc.IngestServiceStub(ingest)
            for device in demo.DEMO_DEVICES:
                token = demo.ensure_device(device, folder, devices, uploads)
                self.running.tokens.append(token)
                details.append(f"{device.device_id} ({token.state.value})")
        for token in self.running.tokens:
            if not token.usable:
                self.status.warn(token.problem())

    def _demo_alert_rule(self) -> None:
        with (
            self.status.step("demo alert rules (AlertService)") as details,
            with_key(
                self.transport.channel(reachable(self.options.endpoints.control)), self._key()
            ) as control,
        ):
            from sensormesh.v1 import alert_pb2_grpc

            alerts = alert_pb2_grpc.AlertServiceStub(control)
            for rule, watches in demo.DEMO_RULES:
                state = demo.ensure_demo_rule(alerts, rule)
                details.append(f"{rule.rule_id} ({state}): {watches}")

    def _start_devices(self) -> None:
        o = self.options
        usable = [t for t in self.running.tokens if t.usable]
        if not usable:
            return
        with self.status.step("simulated devices started") as details:
            for token in usable:
                device = token.device
                if device.is_gateway:
                    config = demo.agent_config(
                        device, token.token_path, reachable(o.endpoints.ingest), o.data_dir / "agents",
                        ca_file=self.transport.ca_file,
                    )  # fmt: skip
                    argv = sensormesh_argv("agent", "--config", str(config))
                    kind = "agent"
                else:
                    argv = [
                        sys.executable, "-m", "sensormesh_cli.stack.direct_device",
                        "--url", f"{self.transport.scheme}://{reachable(o.endpoints.http)}",
                        "--device-id", device.device_id, "--token-file", str(token.token_path),
                    ]  # fmt: skip
                    if self.transport.ca_file is not None:
                        argv += ["--ca-file", str(self.transport.ca_file)]
                    kind = "direct, REST through Envoy"
                name = f"device-{device.device_id}"
                child = Child(name, argv, env=o.extra_env, log_path=o.log_dir / f"{name}.log")
                self.running.devices.append(child)
                details.append(f"{device.device_id} ({kind})")

    def _wait_first_readings(self) -> None:
        ids = [t.device.device_id for t in self.running.tokens if t.usable]
        if not ids:
            return
        with self.status.step("first readings stored") as details:
            missing = wait_first_readings(
                reachable(self.options.endpoints.query), ids, FIRST_READINGS_TIMEOUT_S,
                self.transport.credentials(), key=self._key(),
            )  # fmt: skip
            details.append(f"{len(ids) - len(missing)} of {len(ids)} devices")
        for device_id in missing:
            self.status.warn(
                f"no readings from {device_id} yet; see {self.options.log_dir}/device-{device_id}.log"
            )

    # -- run -------------------------------------------------------------------------------------

    def crashed(self) -> Child | None:
        """A service that exited on its own, if any. Devices that exit end nothing (see
        supervisor.py); Envoy is `envoy_exited()`."""
        for child in self.running.services:
            if child.exited() is not None:
                return child
        return None

    def envoy_exited(self) -> int | None:
        envoy = self.running.envoy
        return None if envoy is None else envoy.process.poll()

    # -- stop ------------------------------------------------------------------------------------

    def kill_children(self) -> None:
        """SIGKILL every program still running (a second Ctrl-C); the database still stops cleanly."""
        for child in self.running.children():
            if child.exited() is None:
                child.process.kill()
        if self.running.envoy is not None and self.running.envoy.process.poll() is None:
            self.running.envoy.process.kill()

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop in reverse order; `hurry()` true (a second Ctrl-C) kills what is left at once."""
        r = self.running

        def timeout(normal: float) -> float:
            return 0.0 if hurry() else normal

        self._stop_tier("simulated devices", r.devices, timeout(STOP_DEVICES_S))
        if r.envoy is not None:
            with self.status.step("Envoy stopped"):
                r.envoy.stop(timeout(STOP_ENVOY_S) or 0.1)
        self._stop_tier("services", list(reversed(r.services)), timeout(STOP_SERVICES_S))
        if r.database is not None:
            with self.status.step("PostgreSQL stopped" if r.database.embedded else "database released"):
                r.database.close()
        self._lock.release()

    def _stop_tier(self, label: str, children: Sequence[Child], timeout_s: float) -> None:
        alive = [c for c in children if c.exited() is None]
        if not children:
            return
        with self.status.step(f"{label} stopped") as details:
            for child in alive:
                child.terminate()
            deadline = time.monotonic() + timeout_s
            for child in children:
                code = child.stop(max(deadline - time.monotonic(), 0.1))
                if code not in (0, -signal.SIGTERM):
                    details.append(f"{child.name} exited with {code}")


def server_version(url: str) -> str:
    """ "PostgreSQL 17.5"; StepFailed with libpq's reason when the server cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
    except psycopg.OperationalError as error:
        raise StepFailed(f"cannot connect to the database: {str(error).strip()}") from None
    return f"PostgreSQL {row[0] if row else '?'}"


async def _maintain(url: str, settings: StorageSettings) -> Any:
    import asyncpg

    from sensormesh_core.storage.maintenance import maintain

    conn = await asyncpg.connect(url)
    try:
        return await maintain(conn, settings, apply_policies=True)
    finally:
        await conn.close()
