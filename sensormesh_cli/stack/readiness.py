"""Waiting for the stack's pieces: gRPC health, the console's page, and the first readings of each device."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sensormesh.v1 import query_pb2, query_pb2_grpc

from sensormesh_cli.bearer import with_key
from sensormesh_cli.stack.children import Child
from sensormesh_cli.stack.status import StepFailed


def _exited(child: Child) -> StepFailed:
    return StepFailed(
        f"{child.name} exited with status {child.exited()}; the end of {child.log_path}:\n{child.log_tail()}"
    )


def _channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def wait_serving(
    target: str,
    service: str,
    child: Child,
    timeout_s: float,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Return once `service` at `target` answers health Check with SERVING (TLS with `credentials`)."""
    deadline = time.monotonic() + timeout_s
    request = health_pb2.HealthCheckRequest(service=service)
    with _channel(target, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.exited() is not None:
                raise _exited(child)
            try:
                # wait_for_ready: the call waits for the port to open, up to its short timeout,
                # so a child that dies before binding is noticed within a second.
                response = stub.Check(request, timeout=1.0, wait_for_ready=True)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise StepFailed(f"{child.name}: health check failed: {error.details()}") from None
            time.sleep(0.1)
    if child.exited() is not None:
        raise _exited(child)
    raise StepFailed(f"{child.name} did not report SERVING within {timeout_s:.0f} s; see {child.log_path}")


def wait_http(url: str, child: Child, timeout_s: float) -> None:
    """Return once `url` (plain HTTP on loopback) answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.exited() is not None:
            raise _exited(child)
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own http:// URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    if child.exited() is not None:
        raise _exited(child)
    raise StepFailed(f"{child.name} did not answer {url} within {timeout_s:.0f} s; see {child.log_path}")


def wait_first_readings(
    query_target: str,
    device_ids: Iterable[str],
    timeout_s: float,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    key: str | None = None,
) -> list[str]:
    """Wait until each device has a latest value (asking with the admin `key`); returns the devices still without one."""
    waiting = list(device_ids)
    deadline = time.monotonic() + timeout_s
    with with_key(_channel(query_target, credentials), key) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        while waiting and time.monotonic() < deadline:
            for device_id in list(waiting):
                request = query_pb2.GetLatestReadingsRequest(device_id=device_id)
                try:
                    if stub.GetLatestReadings(request, timeout=5).values:
                        waiting.remove(device_id)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
            if waiting:
                time.sleep(0.2)  # the agents commit at least every second
    return waiting
