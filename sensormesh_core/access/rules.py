"""The access rule of each RPC, read from the contract's descriptors.

Every sensormesh RPC carries `option (sensormesh.v1.access)`; this module
turns the descriptors of the services a server runs into a map from the
gRPC method path (`/sensormesh.v1.DeviceService/GetDevice`) to its rule.
Health checking and reflection are open (probes and stock tools on the
services' own ports; Envoy routes neither publicly).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from sensormesh.v1 import access_rule_pb2

from sensormesh_core.access.principal import ROLE_NAMES

OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call one RPC: `role` (an operator role, 0 for none) or `device`; whether it is audited."""

    method: str  # "sensormesh.v1.DeviceService/GetDevice"
    role: int
    device: bool
    audit: bool
    streaming: bool

    @property
    def needs(self) -> str:
        """What the rule asks for, in words: `the operator role`, `a device token`."""
        return "a device token" if self.device else f"the {ROLE_NAMES[self.role]} role"


class MissingAccessRule(RuntimeError):
    """An RPC without `option (sensormesh.v1.access)`: it would be open to anyone."""


def rule_of(method: MethodDescriptor) -> Rule:
    """The access rule of one RPC. Raises MissingAccessRule if it declares none."""
    options = method.GetOptions()
    if not options.HasExtension(access_rule_pb2.access):
        raise MissingAccessRule(f"{method.full_name} declares no (sensormesh.v1.access) option")
    rule = options.Extensions[access_rule_pb2.access]
    caller = rule.WhichOneof("caller")
    if caller is None or (caller == "role" and rule.role not in ROLE_NAMES):
        raise MissingAccessRule(f"{method.full_name}'s access option names neither a role nor a device")
    return Rule(
        method=f"{method.containing_service.full_name}/{method.name}",
        role=rule.role if caller == "role" else 0,
        device=caller == "device",
        audit=rule.audit,
        streaming=method.client_streaming or method.server_streaming,
    )


def rules_for(services: Iterable[str]) -> dict[str, Rule]:
    """`/package.Service/Method` -> rule, for every RPC of the named services."""
    pool = descriptor_pool.Default()
    rules: dict[str, Rule] = {}
    for name in services:
        service: ServiceDescriptor = pool.FindServiceByName(name)
        for method in service.methods:
            rule = rule_of(method)
            rules[f"/{rule.method}"] = rule
    return rules


def is_open(method_path: str) -> bool:
    """Whether a method path belongs to health checking or reflection."""
    service = method_path.lstrip("/").split("/", 1)[0]
    return service in OPEN_SERVICES
