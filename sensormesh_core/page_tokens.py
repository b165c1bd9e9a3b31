"""Opaque, stateless page tokens bound to the query that issued them (AIP-158).

A token is URL-safe base64 of a small JSON object: a version, the kind of
list, a fingerprint of the request's parameters and the cursor (where the next
page starts, plus anything the first page resolved, such as a defaulted end
time). Stateless, so any replica can serve the next page; the fingerprint
makes a token given with other parameters an INVALID_ARGUMENT instead of a
silently wrong page. Tokens are not secret: a forged cursor can only point at
another position of the same query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from sensormesh_core.errors import FieldViolation, InvalidArgument

_VERSION = 1


def fingerprint(parameters: dict[str, Any]) -> str:
    """A short digest of the parameters a token is valid for."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(kind: str, parameters: dict[str, Any], cursor: dict[str, Any]) -> str:
    payload = {"v": _VERSION, "k": kind, "f": fingerprint(parameters), "c": cursor}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


NOT_ISSUED = "not a page token issued by this service"


def invalid(description: str = NOT_ISSUED) -> InvalidArgument:
    """The error for a bad `page_token` (callers raise it for a cursor of the wrong shape)."""
    return InvalidArgument(f"invalid page_token: {description}", [FieldViolation("page_token", description)])


def decode(token: str, kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The cursor in `token`; raises InvalidArgument naming `page_token`.

    The cursor's own fields are the caller's to check (`invalid()` when they do
    not have the shape it issued): the fingerprint is no signature, so a client
    can forge a token for the right parameters with any cursor."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise invalid() from exc
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or payload.get("k") != kind:
        raise invalid()
    if payload.get("f") != fingerprint(parameters):
        raise invalid("the request's parameters differ from those of the call that issued this token")
    cursor = payload.get("c")
    if not isinstance(cursor, dict):
        raise invalid()
    return cursor


def id_before(token: str, kind: str, parameters: dict[str, Any]) -> int | None:
    """The `before` id of a newest-first list's token (None for the first page); raises
    InvalidArgument naming `page_token` for anything but a positive integer."""
    if not token:
        return None
    before = decode(token, kind, parameters).get("before")
    if not isinstance(before, int) or isinstance(before, bool) or before < 1:
        raise invalid()
    return before
