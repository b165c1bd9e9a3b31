"""The forwarded single sign-on identity: what Envoy's payload header means to sensormesh."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensormesh_core.access.forwarded import FORWARDED_IDENTITY_HEADER, ForwardedIdentity
from sensormesh_core.access.interceptor import AccessInterceptor, Credentials
from sensormesh_core.access.principal import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER, Principal
from sensormesh_core.access.rules import Rule
from sensormesh_core.errors import PermissionDenied, Unauthenticated

NOW = 1_800_000_000.0


def payload(claims: dict[str, Any], *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    return text if padded else text.rstrip("=")


def reader(**kwargs: Any) -> ForwardedIdentity:
    return ForwardedIdentity(clock=lambda: NOW, **kwargs)


@pytest.mark.parametrize("padded", [False, True])
def test_subject_and_role_make_an_sso_principal(padded: bool) -> None:
    header = payload({"sub": "alice@example.com", "sensormesh_role": "viewer"}, padded=padded)
    principal = reader().principal(header)
    assert principal == Principal("sso", "alice@example.com", ROLE_VIEWER)
    assert principal.actor == "sso:alice@example.com"


def test_configured_claim_names_are_read() -> None:
    header = payload({"email": "bob@example.com", "groups": ["viewer", "admin", "staff"]})
    principal = reader(subject_claim="email", role_claim="groups").principal(header)
    assert principal == Principal("sso", "bob@example.com", ROLE_ADMIN)


@pytest.mark.parametrize("role", [None, "superuser", "", ["staff"], 3])
def test_missing_or_unknown_role_is_refused_naming_the_claim(role: object) -> None:
    claims: dict[str, Any] = {"sub": "carol"}
    if role is not None:
        claims["sensormesh_role"] = role
    with pytest.raises(PermissionDenied, match="'sensormesh_role' claim") as refused:
        reader().principal(payload(claims))
    assert refused.value.reason == "SSO_ROLE_MISSING"


def test_no_subject_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="'sub' claim"):
        reader().principal(payload({"sensormesh_role": "admin"}))


def test_expired_beyond_the_leeway_is_unauthenticated() -> None:
    claims = {"sub": "dave", "sensormesh_role": "operator"}
    assert reader().principal(payload({**claims, "exp": NOW - 30})).role == ROLE_OPERATOR
    with pytest.raises(Unauthenticated, match="expired"):
        reader().principal(payload({**claims, "exp": NOW - 61}))


@given(st.text())
def test_any_header_value_is_a_principal_or_a_refusal(header: str) -> None:
    with contextlib.suppress(Unauthenticated, PermissionDenied):
        reader().principal(header)


def test_header_is_found_in_metadata_case_insensitively() -> None:
    metadata = [("authorization", "Bearer x"), ("X-Sensormesh-Identity", b"abc")]
    assert reader().header(metadata) == "abc"
    assert reader().header([("authorization", "Bearer x")]) is None
    assert FORWARDED_IDENTITY_HEADER == "x-sensormesh-identity"


OPERATOR_RULE = Rule(
    "sensormesh.v1.DeviceService/ListDevices", role=ROLE_VIEWER, device=False, audit=False, streaming=False
)


class NoKeys:
    async def authenticate(self, credential: str) -> Principal:
        raise Unauthenticated("unknown API key", reason="API_KEY_UNKNOWN")


async def test_interceptor_takes_the_forwarded_identity_only_when_trusted() -> None:
    header = payload({"sub": "erin", "sensormesh_role": "viewer"})
    credentials = Credentials("eyJhbGciOi.x.y", header)
    trusting = AccessInterceptor([], keys=NoKeys(), forwarded=reader())
    assert await trusting.identify(OPERATOR_RULE, credentials) == Principal("sso", "erin", ROLE_VIEWER)
    ignoring = AccessInterceptor([], keys=NoKeys())
    with pytest.raises(Unauthenticated, match="unknown API key"):
        await ignoring.identify(OPERATOR_RULE, credentials)
