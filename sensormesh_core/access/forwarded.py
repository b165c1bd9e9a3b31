"""The single sign-on identity Envoy forwards, turned into a principal.

Envoy's jwt_authn filter verifies a bearer JWT (issuer, audience, signature,
expiry) and forwards its payload, base64url-encoded JSON, in the
`x-sensormesh-identity` header; Envoy removes any copy a client sent before the
filter runs. A service trusts that header only when told to
(`SENSORMESH_TRUST_FORWARDED_IDENTITY`), that is only where Envoy is the only
way in: anyone who can reach the service's port directly could write it.

Nothing here checks a signature: that is Envoy's job, done before the header
exists. What is checked is what the payload means to sensormesh: who (the
subject claim) and which role (the role claim), and, for streams that outlive
their token, that it has not expired since.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sensormesh_core.access.principal import ROLES_BY_NAME, Principal
from sensormesh_core.config import ServiceSettings
from sensormesh_core.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

FORWARDED_IDENTITY_HEADER = "x-sensormesh-identity"
# Envoy's jwt_authn accepts a token up to 60 s past its `exp` by default; the same here.
EXPIRY_LEEWAY_S = 60.0


@dataclass(frozen=True, slots=True)
class ForwardedIdentity:
    """Reads the forwarded payload with the configured claim names."""

    subject_claim: str = "sub"
    role_claim: str = "sensormesh_role"
    clock: Callable[[], float] = field(default=time.time, compare=False)

    @classmethod
    def trusted_from(cls, settings: ServiceSettings) -> ForwardedIdentity | None:
        """The reader the settings ask for, or None when the forwarded identity is not trusted."""
        if not settings.trust_forwarded_identity:
            return None
        log.info(
            "event=forwarded_identity_trusted subject_claim=%s role_claim=%s",
            settings.sso_subject_claim,
            settings.sso_role_claim,
        )
        return cls(subject_claim=settings.sso_subject_claim, role_claim=settings.sso_role_claim)

    def header(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        """The forwarded header's value from call metadata, if there is one."""
        for key, value in metadata or ():
            if key.lower() == FORWARDED_IDENTITY_HEADER:
                return value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return None

    def principal(self, header: str) -> Principal:
        """The single sign-on principal the header names.

        Raises Unauthenticated for a header that is not a JWT payload, names no
        subject or has expired; PermissionDenied, naming the claim, when the
        role claim is missing or names no sensormesh role.
        """
        claims = _decode(header)
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(
                f"the single sign-on token has no {self.subject_claim!r} claim naming the caller",
                reason="SSO_SUBJECT_MISSING",
            )
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and expiry + EXPIRY_LEEWAY_S < self.clock():
            raise Unauthenticated(
                f"the single sign-on token of {subject!r} has expired", reason="SSO_EXPIRED"
            )
        return Principal("sso", subject, self._role(subject, claims.get(self.role_claim)))

    def _role(self, subject: str, value: Any) -> int:
        names = value if isinstance(value, list) else [value]
        roles = [ROLES_BY_NAME[name] for name in names if isinstance(name, str) and name in ROLES_BY_NAME]
        if not roles:
            raise PermissionDenied(
                f"sso:{subject} has no sensormesh role: the token's {self.role_claim!r} claim must be "
                f"one of {', '.join(ROLES_BY_NAME)} (it is {value!r})",
                reason="SSO_ROLE_MISSING",
            )
        return max(roles)


def _decode(header: str) -> dict[str, Any]:
    """The JSON object in a base64url header value (padded or not, as Envoy may send either)."""
    text = header.strip()
    try:
        payload = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated(
            "the forwarded single sign-on identity is not a JWT payload", reason="SSO_MALFORMED"
        ) from exc
    if not isinstance(payload, dict):
        raise Unauthenticated(
            "the forwarded single sign-on identity is not a JWT payload", reason="SSO_MALFORMED"
        )
    return payload
