"""Recording audited calls: who, what, when, outcome, in the database.

The interceptor calls `AuditLog.record` once a call that its rule marks
`audit` has ended, refused calls included. A failure to write the entry is
logged and does not change the call's answer: the change it describes has
already happened (or was refused) by then.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message

from sensormesh_core import errors
from sensormesh_core.grpc_errors import status_code_for
from sensormesh_core.storage import audit

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"

# Fields that name what a call acts on, and the collection each names.
_RESOURCE_FIELDS = (
    ("device_id", "devices"),
    ("device.device_id", "devices"),
    ("api_key.name", "apiKeys"),
)
# A bare `name` field names a resource of the service's own collection.
_SERVICE_COLLECTIONS = {"sensormesh.v1.AccessService": "apiKeys"}
# Services whose resources are children of a device's: `devices/pi-1/commands/42`.
_DEVICE_CHILDREN = {"sensormesh.v1.CommandService": ("commands", "command_id")}


def resource_of(method: str, request: Any) -> str:
    """`devices/pi-1`, `devices/pi-1/commands/42`, `apiKeys/grafana`, or "" when the request names
    nothing (a stream)."""
    if not isinstance(request, Message):
        return ""
    service = method.split("/", 1)[0]
    for path, collection in _RESOURCE_FIELDS:
        value = _field(request, path)
        if value:
            return f"{collection}/{value}" + _child(service, request)
    name = _field(request, "name")
    if name and service in _SERVICE_COLLECTIONS:
        return f"{_SERVICE_COLLECTIONS[service]}/{name}"
    return ""


def _child(service: str, request: Message) -> str:
    """`/commands/42` for a call on one of a device's commands, `/commands` for a new one."""
    if service not in _DEVICE_CHILDREN:
        return ""
    collection, id_field = _DEVICE_CHILDREN[service]
    number = getattr(request, id_field, 0) if id_field in request.DESCRIPTOR.fields_by_name else 0
    return f"/{collection}/{number}" if number else f"/{collection}"


def _field(message: Message, path: str) -> str:
    value: Any = message
    for part in path.split("."):
        if not isinstance(value, Message) or part not in value.DESCRIPTOR.fields_by_name:
            return ""
        value = getattr(value, part)
    return value if isinstance(value, str) else ""


def outcome_of(error: BaseException | None) -> tuple[str, str]:
    """The status code's name and the error's message ("OK", "" on success)."""
    if error is None:
        return "OK", ""
    if isinstance(error, errors.SensormeshError):
        return status_code_for(error).name, error.message
    if isinstance(error, grpc.aio.AbortError):
        return "ABORTED_BY_HANDLER", ""
    return grpc.StatusCode.INTERNAL.name, "internal error"


class AuditLog:
    """Appends audit entries through a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, actor: str, method: str, request: Any, error: BaseException | None) -> None:
        outcome, message = outcome_of(error)
        entry = audit.AuditEntry(actor, method, resource_of(method, request), outcome, message)
        try:
            async with self._pool.acquire() as conn:
                await audit.record(conn, entry)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error(
                "event=audit_write_failed actor=%s method=%s outcome=%s error=%r", actor, method, outcome, exc
            )
