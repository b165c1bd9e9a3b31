"""What `sensormesh keys` prints: a table for people, the API's JSON with --json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from sensormesh.v1 import access_pb2

from sensormesh_cli.devices_output import table
from sensormesh_core.access.principal import ROLE_NAMES
from sensormesh_core.tokens import write_token_file


def _time(value: Timestamp, present: bool) -> str:
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if present else "-"


def _role(role: int) -> str:
    return ROLE_NAMES.get(role, "none")


def _scope(key: access_pb2.ApiKey) -> str:
    if not key.HasField("device_scope"):
        return "all devices"
    if key.device_scope.device_ids:
        return ",".join(key.device_scope.device_ids)
    return ",".join(f"{k}={v}" for k, v in sorted(key.device_scope.labels.items()))


def created(response: access_pb2.CreateApiKeyResponse, key_file: Path | None, *, as_json: bool) -> int:
    if key_file is not None:
        write_token_file(key_file, response.key)
    if as_json:
        print(json_format.MessageToJson(response, indent=2))
        return 0
    key = response.api_key
    where = f"; it is in {key_file} (mode 0600)" if key_file is not None else ""
    print(f"key {key.name} created ({_role(key.role)}, {_scope(key)}){where}. Shown only now:")
    print(response.key)
    return 0


def listed(keys: Sequence[access_pb2.ApiKey], *, as_json: bool) -> int:
    if as_json:
        print(json_format.MessageToJson(access_pb2.ListApiKeysResponse(api_keys=keys), indent=2))
        return 0
    rows = [["NAME", "ROLE", "DEVICES", "EXPIRES", "CREATED", "REVOKED", "CREATOR"]]
    for k in keys:
        rows.append(
            [
                k.name,
                _role(k.role),
                _scope(k),
                _time(k.expire_time, k.HasField("expire_time")),
                _time(k.create_time, k.HasField("create_time")),
                _time(k.revoke_time, k.HasField("revoke_time")),
                k.creator,
            ]
        )
    print(table(rows))
    return 0
