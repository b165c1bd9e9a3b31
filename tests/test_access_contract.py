"""The access rules live in the contract: every RPC of every sensormesh service
declares one, what changes something is audited, and the rules say what the
roles of this platform promise (viewers read, operators change, admins manage
keys and delete)."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from sensormesh.v1 import (  # noqa: F401 - imported for their descriptors
    access_pb2,
    access_rule_pb2,
    alert_pb2,
    audit_pb2,
    command_delivery_pb2,
    command_pb2,
    device_pb2,
    frame_pb2,
    ingest_pb2,
    query_pb2,
)

from sensormesh_core.access.principal import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER
from sensormesh_core.access.rules import MissingAccessRule, Rule, rule_of, rules_for
from tests.test_contracts import _descriptor_set

SENSORMESH_SERVICES = sorted(
    f"{f.package}.{s.name}" for f in _descriptor_set().file if f.package == "sensormesh.v1" for s in f.service
)


def _all_rules() -> dict[str, Rule]:
    return rules_for(SENSORMESH_SERVICES)


def test_the_contract_has_the_services_we_serve() -> None:
    assert {
        "sensormesh.v1.IngestService",
        "sensormesh.v1.DeviceService",
        "sensormesh.v1.QueryService",
        "sensormesh.v1.AccessService",
        "sensormesh.v1.AuditService",
        "sensormesh.v1.FrameService",
    } <= set(SENSORMESH_SERVICES)


def test_every_rpc_declares_an_access_rule() -> None:
    """An RPC added later without `option (sensormesh.v1.access)` fails here (and the server refuses to start)."""
    missing = []
    for file in _descriptor_set().file:
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(access_rule_pb2.access):
                    missing.append(f"{file.package}.{service.name}/{method.name}")
    assert missing == []


def test_a_method_without_the_option_is_refused_by_the_rule_reader() -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="probe.proto", package="probe")
    file.message_type.add(name="Empty")
    service = file.service.add(name="Open")
    service.method.add(name="Anything", input_type=".probe.Empty", output_type=".probe.Empty")
    pool.Add(file)
    with pytest.raises(MissingAccessRule, match=r"probe\.Open\.Anything"):
        rule_of(pool.FindServiceByName("probe.Open").methods[0])


def test_every_rpc_that_changes_something_is_audited() -> None:
    """Operator and admin RPCs change state or manage access; each is audited, except pure reads."""
    reads = {"ListApiKeys", "ListAuditEvents"}
    unaudited = [
        rule.method
        for rule in _all_rules().values()
        if rule.role >= ROLE_OPERATOR and not rule.audit and rule.method.split("/")[1] not in reads
    ]
    assert unaudited == []


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("sensormesh.v1.DeviceService/ListDevices", ROLE_VIEWER),
        ("sensormesh.v1.DeviceService/GetDevice", ROLE_VIEWER),
        ("sensormesh.v1.DeviceService/ListCommandSpecs", ROLE_VIEWER),
        ("sensormesh.v1.QueryService/ListReadings", ROLE_VIEWER),
        ("sensormesh.v1.QueryService/GetLatestReadings", ROLE_VIEWER),
        ("sensormesh.v1.QueryService/WatchReadings", ROLE_VIEWER),
        ("sensormesh.v1.FrameService/ListFrames", ROLE_VIEWER),
        ("sensormesh.v1.FrameService/GetFrame", ROLE_VIEWER),
        ("sensormesh.v1.FrameService/WatchFrames", ROLE_VIEWER),
        ("sensormesh.v1.DeviceService/CreateDevice", ROLE_OPERATOR),
        ("sensormesh.v1.DeviceService/UpdateDevice", ROLE_OPERATOR),
        ("sensormesh.v1.DeviceService/RotateDeviceToken", ROLE_OPERATOR),
        ("sensormesh.v1.DeviceService/DeleteDevice", ROLE_ADMIN),
        ("sensormesh.v1.AccessService/CreateApiKey", ROLE_ADMIN),
        ("sensormesh.v1.AccessService/ListApiKeys", ROLE_ADMIN),
        ("sensormesh.v1.AccessService/RevokeApiKey", ROLE_ADMIN),
        ("sensormesh.v1.AccessService/GetCaller", ROLE_VIEWER),
        ("sensormesh.v1.AuditService/ListAuditEvents", ROLE_ADMIN),
    ],
)
def test_roles_are_what_the_platform_promises(method: str, role: int) -> None:
    rule = _all_rules()[f"/{method}"]
    assert (rule.role, rule.device) == (role, False)


def test_only_the_device_facing_rpcs_take_a_device_token() -> None:
    device_rpcs = sorted(rule.method for rule in _all_rules().values() if rule.device)
    assert device_rpcs == [
        "sensormesh.v1.CommandDeliveryService/ConnectCommands",
        "sensormesh.v1.IngestService/GetFrameUploadOffset",
        "sensormesh.v1.IngestService/GetUploadOffset",
        "sensormesh.v1.IngestService/UploadFrames",
        "sensormesh.v1.IngestService/UploadReadings",
        "sensormesh.v1.IngestService/WriteReadings",
    ]
