"""AccessService: operator API keys over gRPC (and REST through Envoy); admin only,
but for GetCaller, which tells any operator who it is.

Hosted by the query process, beside the other user-facing services; the
interceptor has checked the rule's role before a handler runs.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import access_pb2, access_pb2_grpc, access_rule_pb2

from sensormesh_core import page_tokens
from sensormesh_core.access.api_key_messages import api_key_message
from sensormesh_core.access.principal import current_caller
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage import api_keys
from sensormesh_core.validation import validate

log = logging.getLogger(__name__)
KEY_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _expiry(request: access_pb2.CreateApiKeyRequest) -> datetime | None:
    if request.HasField("ttl"):
        return datetime.now(UTC) + request.ttl.ToTimedelta()
    if request.api_key.HasField("expire_time"):
        return request.api_key.expire_time.ToDatetime(tzinfo=UTC)
    return None


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    """Validates, calls the key store, maps the result."""

    def __init__(self, pool: asyncpg.Pool, *, default_page_size: int) -> None:
        self._pool = pool
        self._default_page_size = default_page_size

    async def CreateApiKey(
        self, request: access_pb2.CreateApiKeyRequest, context: Context
    ) -> access_pb2.CreateApiKeyResponse:
        validate(request)
        current_caller().require_unscoped("managing API keys")
        key = request.api_key
        scope = DeviceScope.of(key.device_scope.device_ids, dict(key.device_scope.labels))
        async with self._pool.acquire() as conn:
            record, secret = await api_keys.create_key(
                conn,
                key.name,
                key.role,
                creator=current_caller().actor,
                scope=scope,
                expire_time=_expiry(request),
            )
        log.info("event=api_key_created name=%s role=%d by=%s", record.name, record.role, record.creator)
        return access_pb2.CreateApiKeyResponse(api_key=api_key_message(record), key=secret)

    async def ListApiKeys(
        self, request: access_pb2.ListApiKeysRequest, context: Context
    ) -> access_pb2.ListApiKeysResponse:
        validate(request)
        current_caller().require_unscoped("managing API keys")
        parameters = {"show_revoked": request.show_revoked}
        after = None
        if request.page_token:
            after = page_tokens.decode(request.page_token, "api_keys", parameters).get("after")
            if not isinstance(after, str) or KEY_NAME.fullmatch(after) is None:
                raise page_tokens.invalid()
        size = request.page_size or self._default_page_size
        async with self._pool.acquire() as conn:
            records = await api_keys.list_keys(
                conn, after=after, limit=size + 1, show_revoked=request.show_revoked
            )
        response = access_pb2.ListApiKeysResponse(api_keys=[api_key_message(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = page_tokens.encode(
                "api_keys", parameters, {"after": records[size - 1].name}
            )
        return response

    async def RevokeApiKey(
        self, request: access_pb2.RevokeApiKeyRequest, context: Context
    ) -> access_pb2.RevokeApiKeyResponse:
        validate(request)
        current_caller().require_unscoped("managing API keys")
        async with self._pool.acquire() as conn:
            record = await api_keys.revoke_key(conn, request.name)
        log.info("event=api_key_revoked name=%s by=%s", record.name, current_caller().actor)
        return access_pb2.RevokeApiKeyResponse(api_key=api_key_message(record))

    async def GetCaller(
        self, request: access_pb2.GetCallerRequest, context: Context
    ) -> access_pb2.GetCallerResponse:
        caller = current_caller()
        response = access_pb2.GetCallerResponse(
            actor=caller.actor, role=access_rule_pb2.Role.ValueType(caller.role)
        )
        if caller.scope is not None:
            response.device_scope.device_ids.extend(sorted(caller.scope.device_ids))
            response.device_scope.labels.update(caller.scope.labels)
        return response
