"""A stand-in IngestService behind Envoy, until ingest_service lands: it checks
the bearer token like the real one must, so the tests can show that Envoy
forwards `Authorization` and maps UNAUTHENTICATED / PERMISSION_DENIED to 401 /
403. It is a test double and lives in tests/."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sensormesh.v1 import ingest_pb2, ingest_pb2_grpc

from sensormesh_core.tokens import bearer_token

TOKEN = "smdt_fake-token-of-pi-allowed"
DEVICE = "pi-allowed"


class FakeIngest(ingest_pb2_grpc.IngestServiceServicer):
    def GetUploadOffset(self, request: ingest_pb2.GetUploadOffsetRequest, context: Any) -> Any:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        if token != TOKEN or request.device_id != DEVICE:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"token may not act as {request.device_id}")
        return ingest_pb2.GetUploadOffsetResponse(device_id=DEVICE, committed_sequence=41)


def start_fake_ingest() -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(FakeIngest(), server)
    checks = health.HealthServicer()
    for name in ("", "sensormesh.v1.IngestService"):
        checks.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
