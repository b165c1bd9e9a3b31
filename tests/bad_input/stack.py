"""The running stack of the bad-input suite and what the tests ask of it:
registering devices, counting what is stored, and reading errors the way a
gRPC or a REST client sees them.

Operator RPCs (DeviceService, QueryService) need an operator API key: the
stack holds an admin key made on its database, and tests send it with
`admin_headers` (REST) or `admin_metadata` (gRPC). Device RPCs take the
device's own token, as before."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import httpx
import psycopg
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sensormesh_cli.stack.envoy_proxy import EnvoyProcess
from tests.support.processes import ServiceProcess

# What a handler's unexpected exception leaves in a service's log (sensormesh_core.grpc_errors),
# and what grpc itself logs when a request cannot be deserialized or a handler raises.
FAILURE_MARKERS = ("event=rpc_failed", "Traceback", "Exception deserializing", "Unexpected [")


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    ingest: ServiceProcess
    query: ServiceProcess
    envoy: EnvoyProcess
    database_url: str
    admin_key: str

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}

    @property
    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_key}"),)

    @property
    def url(self) -> str:
        return self.envoy.base_url

    @property
    def envoy_target(self) -> str:
        return f"127.0.0.1:{self.envoy.options.listen_port}"

    @property
    def ingest_target(self) -> str:
        return f"127.0.0.1:{self.ingest.port}"

    @property
    def query_target(self) -> str:
        return f"127.0.0.1:{self.query.port}"

    def wait_routable(self, timeout: float = 30.0) -> None:
        """Wait until Envoy's health checks let calls through to both services."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while True:
                devices = client.get("/v1/devices", headers=self.admin_headers).status_code
                offset = client.get("/v1/devices/nobody/uploadOffset").status_code
                if devices == 200 and offset == 401:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"stack not routable: devices {devices}, offset {offset}")
                time.sleep(0.05)

    def register(self, prefix: str, http: httpx.Client | None = None) -> Device:
        """A new device registered through REST with the admin key (on `http`'s connection when given)."""
        device_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
        body = {"deviceId": device_id}
        if http is not None:
            response = http.post("/v1/devices", json=body, headers=self.admin_headers)
        else:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                response = client.post("/v1/devices", json=body, headers=self.admin_headers)
        assert response.status_code == 200, response.text
        return Device(device_id, response.json()["token"])

    def log_marks(self) -> dict[str, int]:
        return {name: self._log_path(name).stat().st_size for name in ("ingest", "query")}

    def failures_since(self, marks: dict[str, int]) -> list[str]:
        found = []
        for name, offset in marks.items():
            with self._log_path(name).open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            found += [
                f"{name}: {line}" for line in text.splitlines() if any(m in line for m in FAILURE_MARKERS)
            ]
        return found

    def log_tail(self, name: str, limit: int = 4000) -> str:
        return self._log_path(name).read_text(errors="replace")[-limit:]

    def _log_path(self, name: str) -> Any:
        return {"ingest": self.ingest, "query": self.query}[name].log_path


def stored_count(db: psycopg.Connection, device_id: str, since: datetime | None = None) -> int:
    """Readings stored for a device over every reading table; with `since`, only those
    sampled since then (the partitions before are not read: much faster on a busy database)."""
    sensors = "SELECT sensor_id FROM sensors WHERE device_id = %(d)s"
    series = f"SELECT series_id FROM series WHERE sensor_id IN ({sensors})"
    recent = " AND time >= %(since)s" if since is not None else ""
    row = db.execute(
        f"SELECT (SELECT count(*) FROM imu_readings WHERE sensor_id IN ({sensors}){recent})"
        f" + (SELECT count(*) FROM environment_readings WHERE sensor_id IN ({sensors}){recent})"
        f" + (SELECT count(*) FROM system_readings WHERE sensor_id IN ({sensors}){recent})"
        f" + (SELECT count(*) FROM link_health_readings WHERE sensor_id IN ({sensors}){recent})"
        f" + (SELECT count(*) FROM measurements WHERE series_id IN ({series}){recent})",
        {"d": device_id, "since": since},
    ).fetchone()
    assert row is not None
    return int(row[0])


def dead_letter_count(db: psycopg.Connection, device_id: str) -> int:
    row = db.execute("SELECT count(*) FROM dead_letters WHERE device_id = %s", (device_id,)).fetchone()
    assert row is not None
    return int(row[0])


def committed(db: psycopg.Connection, device_id: str) -> int:
    row = db.execute(
        "SELECT committed_sequence FROM upload_offsets WHERE device_id = %s", (device_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Return once `condition()` holds; fail naming `what` at the deadline.

    A stream cut by an error ends at once, while the batches it had already
    received may still be committing in a transaction of their own."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {within} s: {what}")
        time.sleep(0.02)


def grpc_violations(error: grpc.RpcError) -> dict[str, str]:
    """field -> description of a failed call's BadRequest detail (empty if none)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, str] = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def rest_violations(response: httpx.Response) -> dict[str, str]:
    """field -> description of a REST error body's BadRequest detail (empty if none)."""
    body = response.json()
    found: dict[str, str] = {}
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.BadRequest"):
            found.update({v["field"]: v["description"] for v in detail.get("fieldViolations", [])})
    return found


@dataclass(frozen=True)
class Outcome:
    """What a gRPC call came back with: OK and the response bytes, or a status."""

    code: grpc.StatusCode
    details: str = ""
    violations: dict[str, str] | None = None
    response: bytes = b""

    def __str__(self) -> str:
        return f"{self.code.name} {self.details!r} {self.violations}"


def _outcome(error: grpc.RpcError) -> Outcome:
    return Outcome(error.code(), error.details() or "", grpc_violations(error))  # type: ignore[attr-defined]


def unary(target: str, method: str, payload: bytes, metadata: Any = (), timeout: float = 20) -> Outcome:
    """Call `method` (`/package.Service/Method`) with raw request bytes."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        try:
            return Outcome(grpc.StatusCode.OK, response=call(payload, metadata=metadata, timeout=timeout))
        except grpc.RpcError as error:
            return _outcome(error)


def client_stream(
    target: str, method: str, payloads: list[bytes], metadata: Any = (), timeout: float = 30
) -> Outcome:
    """A client-streaming call with raw request messages."""
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_unary(method)
        try:
            return Outcome(
                grpc.StatusCode.OK, response=call(iter(payloads), metadata=metadata, timeout=timeout)
            )
        except grpc.RpcError as error:
            return _outcome(error)


def first_of_stream(
    target: str, method: str, payload: bytes, metadata: Any = (), timeout: float = 3
) -> Outcome:
    """A server-streaming call: its first message, or its status (DEADLINE_EXCEEDED: still open, no message)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_stream(method)
        try:
            stream = call(payload, metadata=metadata, timeout=timeout)
            return Outcome(grpc.StatusCode.OK, response=next(iter(stream)))
        except grpc.RpcError as error:
            return _outcome(error)
