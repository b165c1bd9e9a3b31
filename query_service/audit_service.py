"""AuditService: the audit log over gRPC (and REST through Envoy); admin only."""

from __future__ import annotations

from datetime import UTC
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import audit_pb2, audit_pb2_grpc

from sensormesh_core import page_tokens
from sensormesh_core.access.principal import current_caller
from sensormesh_core.storage import audit
from sensormesh_core.validation import validate

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def audit_event_message(entry: audit.AuditEntry) -> audit_pb2.AuditEvent:
    message = audit_pb2.AuditEvent(
        event_id=entry.event_id,
        actor=entry.actor,
        method=entry.method,
        resource=entry.resource,
        outcome=entry.outcome,
        message=entry.message,
    )
    if entry.event_time is not None:
        message.event_time.FromDatetime(entry.event_time)
    return message


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Validates, reads one page of the log, maps it."""

    def __init__(self, pool: asyncpg.Pool, *, default_page_size: int) -> None:
        self._pool = pool
        self._default_page_size = default_page_size

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        validate(request)
        current_caller().require_unscoped("reading the audit log")
        start = request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
        parameters = {
            "actor": request.actor,
            "start": start.isoformat() if start else "",
            "end": end.isoformat() if end else "",
        }
        before = page_tokens.id_before(request.page_token, "audit_events", parameters)
        size = request.page_size or self._default_page_size
        async with self._pool.acquire() as conn:
            entries = await audit.list_events(
                conn, before_id=before, limit=size + 1, actor=request.actor, start_time=start, end_time=end
            )
        response = audit_pb2.ListAuditEventsResponse(
            audit_events=[audit_event_message(e) for e in entries[:size]]
        )
        if len(entries) > size:
            response.next_page_token = page_tokens.encode(
                "audit_events", parameters, {"before": entries[size - 1].event_id}
            )
        return response
