"""DeviceService: the device registry over gRPC (and REST through Envoy).

The access interceptor has checked the caller's role before a handler runs;
handlers keep a scoped key to its devices (others are NOT_FOUND, as if they
did not exist) and check the one rule that depends on a field: re-registering
a deleted device's id needs the admin role.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import device_pb2, device_pb2_grpc

from query_service.device_messages import changes_from, create_arguments, device_message
from sensormesh_core import page_tokens
from sensormesh_core.access.principal import ROLE_ADMIN, current_caller
from sensormesh_core.errors import PermissionDenied
from sensormesh_core.storage import command_offers, registry
from sensormesh_core.storage.device_details import device_details
from sensormesh_core.storage.link_extremes import parse_order_by
from sensormesh_core.validation import validate

log = logging.getLogger(__name__)
# The contracts' device id pattern: a ListDevices cursor is always one.
DEVICE_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class DeviceServicer(device_pb2_grpc.DeviceServiceServicer):
    """Validates, calls the registry, maps the result; errors map in the interceptor."""

    def __init__(self, pool: asyncpg.Pool, *, default_page_size: int) -> None:
        self._pool = pool
        self._default_page_size = default_page_size

    async def CreateDevice(
        self, request: device_pb2.CreateDeviceRequest, context: Context
    ) -> device_pb2.CreateDeviceResponse:
        validate(request)
        caller = current_caller()
        if request.reregister and not caller.has_role(ROLE_ADMIN):
            raise PermissionDenied(
                f"re-registering a deleted device's id needs the admin role; {caller.actor} has the "
                f"{caller.role_name} role",
                reason="ROLE_REQUIRED",
            )
        if caller.scope is not None and not caller.scope.allows(
            request.device.device_id, request.device.labels
        ):
            raise PermissionDenied(
                f"{caller.actor} is scoped to {caller.scope.describe()}; the new device would be outside it",
                reason="OUT_OF_SCOPE",
            )
        async with self._pool.acquire() as conn:
            record, token = await registry.create_device(
                conn,
                request.device.device_id,
                reregister=request.reregister,
                **create_arguments(request.device),  # type: ignore[arg-type]
            )
        log.info(
            "event=device_created device_id=%s type=%d by=%s",
            record.device_id,
            record.device_type,
            caller.actor,
        )
        return device_pb2.CreateDeviceResponse(device=device_message(record), token=token)

    async def GetDevice(
        self, request: device_pb2.GetDeviceRequest, context: Context
    ) -> device_pb2.GetDeviceResponse:
        validate(request)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            await registry.require_visible(conn, request.device_id, current_caller().scope)
            record = await registry.get_device(conn, request.device_id)
            details = await device_details(conn, request.device_id)
        return device_pb2.GetDeviceResponse(device=device_message(record, details))

    async def ListDevices(
        self, request: device_pb2.ListDevicesRequest, context: Context
    ) -> device_pb2.ListDevicesResponse:
        validate(request)
        order = parse_order_by(request.order_by)
        parameters: dict[str, object] = {"status": int(request.status), "type": int(request.type)}
        if order.column is not None or order.descending:  # tokens of the id order stay as they were
            parameters["order_by"] = order.text
        after, after_value = None, None
        if request.page_token:
            given = page_tokens.decode(request.page_token, "devices", parameters)
            after, after_value = given.get("after"), given.get("value")
            if not isinstance(after, str) or DEVICE_ID.fullmatch(after) is None:
                raise page_tokens.invalid()  # a forged cursor: not a device id
            if not (after_value is None or isinstance(after_value, float)):
                raise page_tokens.invalid()
        size = request.page_size or self._default_page_size
        async with self._pool.acquire() as conn:
            records = await registry.list_devices(
                conn,
                after=after,
                limit=size + 1,
                status=request.status,
                device_type=request.type,
                scope=current_caller().scope,
                order=order,
                after_value=after_value,
            )
        response = device_pb2.ListDevicesResponse(devices=[device_message(r) for r in records[:size]])
        if len(records) > size:
            last = records[size - 1]
            cursor: dict[str, object] = {"after": last.device_id}
            if order.column is not None:  # the stored double sorted by: exact in JSON (its repr)
                cursor["value"] = last.sort_value(order)
            response.next_page_token = page_tokens.encode("devices", parameters, cursor)
        return response

    async def UpdateDevice(
        self, request: device_pb2.UpdateDeviceRequest, context: Context
    ) -> device_pb2.UpdateDeviceResponse:
        validate(request)
        changes = changes_from(request)
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device.device_id, current_caller().scope)
            record = await registry.update_device(conn, request.device.device_id, changes)
        log.info("event=device_updated device_id=%s status=%d", record.device_id, record.status)
        return device_pb2.UpdateDeviceResponse(device=device_message(record))

    async def DeleteDevice(
        self, request: device_pb2.DeleteDeviceRequest, context: Context
    ) -> device_pb2.DeleteDeviceResponse:
        validate(request)
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device_id, current_caller().scope)
            deleted = await registry.delete_device(conn, request.device_id)
        log.info(
            "event=device_deleted device_id=%s deleted_readings=%d deleted_frames=%d",
            request.device_id,
            deleted.readings,
            deleted.frames,
        )
        return device_pb2.DeleteDeviceResponse(
            deleted_reading_count=deleted.readings, deleted_frame_count=deleted.frames
        )

    async def RotateDeviceToken(
        self, request: device_pb2.RotateDeviceTokenRequest, context: Context
    ) -> device_pb2.RotateDeviceTokenResponse:
        validate(request)
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device_id, current_caller().scope)
            token = await registry.rotate_token(conn, request.device_id)
        log.info("event=device_token_rotated device_id=%s by=%s", request.device_id, current_caller().actor)
        return device_pb2.RotateDeviceTokenResponse(token=token)

    async def ListCommandSpecs(
        self, request: device_pb2.ListCommandSpecsRequest, context: Context
    ) -> device_pb2.ListCommandSpecsResponse:
        validate(request)
        async with self._pool.acquire() as conn:
            await registry.require_visible(conn, request.device_id, current_caller().scope)
            specs = await command_offers.advertised(conn, request.device_id)
        return device_pb2.ListCommandSpecsResponse(command_specs=[specs[name] for name in sorted(specs)])
