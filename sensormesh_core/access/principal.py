"""The caller of the RPC being handled, as the access interceptor established it.

Handlers read it with `current_caller()`: the interceptor sets it in the
handler's task before the handler runs, so it cannot be forged by a request
and never leaks into another call.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from sensormesh.v1 import access_rule_pb2

from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.errors import PermissionDenied

ROLE_VIEWER: int = access_rule_pb2.ROLE_VIEWER
ROLE_OPERATOR: int = access_rule_pb2.ROLE_OPERATOR
ROLE_ADMIN: int = access_rule_pb2.ROLE_ADMIN
ROLE_NAMES: dict[int, str] = {ROLE_VIEWER: "viewer", ROLE_OPERATOR: "operator", ROLE_ADMIN: "admin"}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}

Kind = Literal["key", "sso", "device"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an API key, a single sign-on identity, or a device.

    `name` is the key's name, the identity's subject, or the device's id;
    `role` is 0 for a device; `scope` None means every device.
    """

    kind: Kind
    name: str
    role: int = 0
    scope: DeviceScope | None = None

    @property
    def actor(self) -> str:
        """How the audit log names the caller: `key:ops-alice`, `sso:alice@example.com`, `device:pi-1`."""
        return f"{self.kind}:{self.name}"

    @property
    def device_id(self) -> str:
        """The device's id for a device; empty for an operator."""
        return self.name if self.kind == "device" else ""

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, "none")

    def require_unscoped(self, what: str) -> None:
        """Raise PermissionDenied if the caller is scoped to some devices: `what` needs the whole fleet."""
        if self.scope is not None:
            raise PermissionDenied(
                f"{what} needs a key that is not scoped to some devices; {self.actor} is scoped to "
                f"{self.scope.describe()}",
                reason="UNSCOPED_KEY_REQUIRED",
            )

    def has_role(self, role: int) -> bool:
        """Whether the caller is an operator with `role` or a higher one."""
        return self.kind != "device" and self.role >= role


_caller: ContextVar[Principal | None] = ContextVar("sensormesh_caller", default=None)


def current_caller() -> Principal:
    """The caller of the RPC this task handles.

    Raises RuntimeError outside a call that went through the access
    interceptor: a handler that runs without it is a wiring mistake.
    """
    caller = _caller.get()
    if caller is None:
        raise RuntimeError("no caller: this service runs without sensormesh's AccessInterceptor")
    return caller


def set_caller(principal: Principal) -> None:
    """Set the caller for the rest of this task (the interceptor's wrapper, and tests)."""
    _caller.set(principal)
