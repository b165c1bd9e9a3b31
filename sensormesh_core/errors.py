"""The errors sensormesh raises where a problem is known.

Domain code raises these; the gRPC edge (`sensormesh_core.grpc_errors`)
turns each into a status code with `google.rpc` details, once. No handler
builds a status by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request and why it is bad."""

    field: str
    description: str


class SensormeshError(Exception):
    """Root of every error sensormesh raises on purpose."""

    #: Stable UPPER_SNAKE reason for clients that branch on it (AIP-193).
    reason: str = "SENSORMESH_ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        #: Facts a client may act on, sent as ErrorInfo metadata (`committed_sequence`).
        self.metadata = dict(metadata or {})


class InvalidArgument(SensormeshError):
    """The request is malformed; `violations` name the fields."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: list[FieldViolation] | None = None,
        *,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.violations = violations or []


class NotFound(SensormeshError):
    """The named resource does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(SensormeshError):
    """A resource with that name exists already."""

    reason = "ALREADY_EXISTS"


class Unauthenticated(SensormeshError):
    """No credentials, or credentials that match nothing."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(SensormeshError):
    """Valid credentials that do not allow this (another device, a disabled device)."""

    reason = "PERMISSION_DENIED"


class FailedPrecondition(SensormeshError):
    """The system is not in a state that allows the request."""

    reason = "FAILED_PRECONDITION"


class ResourceExhausted(SensormeshError):
    """A limit was reached (subscribers, message size, rate)."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(SensormeshError):
    """A dependency (the database) cannot be reached; retrying later may work."""

    reason = "UNAVAILABLE"
