"""A stored API key as the contract's `sensormesh.v1.ApiKey` (never the key itself).

One mapping for AccessService and for `sensormesh keys create --database-url`,
which has no service to ask.
"""

from __future__ import annotations

from sensormesh.v1 import access_pb2, access_rule_pb2

from sensormesh_core.storage.api_keys import ApiKeyRecord


def api_key_message(record: ApiKeyRecord) -> access_pb2.ApiKey:
    """The contract's ApiKey for a stored key."""
    message = access_pb2.ApiKey(
        name=record.name, role=access_rule_pb2.Role.ValueType(record.role), creator=record.creator
    )
    message.create_time.FromDatetime(record.create_time)
    if record.scope is not None:
        message.device_scope.device_ids.extend(sorted(record.scope.device_ids))
        message.device_scope.labels.update(record.scope.labels)
    if record.expire_time is not None:
        message.expire_time.FromDatetime(record.expire_time)
    if record.revoke_time is not None:
        message.revoke_time.FromDatetime(record.revoke_time)
    return message
