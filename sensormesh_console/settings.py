"""The console's single sign-on settings, and the document the browser reads them from.

The console is a public OpenID Connect client (authorization code flow with
PKCE, no secret): all it needs to know is public, so the file server hands it
to the page as `/console-config.json`. Unset issuer: no single sign-on, and the
page shows the API key form alone.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from sensormesh_core.config import ENV_PREFIX, SensormeshSettings

LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """scheme://host[:port] of an http(s) URL; ValueError naming what is wrong.

    https, or http on a loopback host only (a provider on this machine, as
    browsers treat http://localhost as a secure context): tokens never cross a
    network in the clear.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"must be https:// (http only for a provider on localhost), got {url!r}")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True)
class SsoClient:
    """What the browser needs for the authorization code flow with PKCE."""

    issuer: str
    client_id: str
    scopes: str
    audience: str | None


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's runtime configuration: single sign-on or not, and where the page may connect."""

    sso: SsoClient | None = None
    connect_origins: tuple[str, ...] = ()  # beyond 'self': the provider's, for discovery and tokens

    def document(self) -> bytes:
        """`/console-config.json`: camelCase JSON, read by console/src/lib/config.ts."""
        sso = self.sso
        body = {
            "sso": None
            if sso is None
            else {
                "issuer": sso.issuer,
                "clientId": sso.client_id,
                "scopes": sso.scopes,
                "audience": sso.audience,
            }
        }
        return json.dumps(body, separators=(",", ":")).encode()


class ConsoleSettings(SensormeshSettings):
    """Single sign-on in the console (README, "Single sign-on"); every value here is public."""

    console_sso_issuer: str | None = Field(
        default=None,
        description=(
            "The identity provider's issuer URL, exactly as its tokens' `iss` (the console reads "
            "`<issuer>/.well-known/openid-configuration`); https, or http on localhost only. Unset: "
            "the console offers the API key form alone."
        ),
    )
    console_sso_client_id: str | None = Field(
        default=None,
        description=(
            "The client id of the console's registration at the provider: a public client (no "
            "secret), authorization code with PKCE, redirect URI `https://<your Envoy host>/`. "
            "Required with SENSORMESH_CONSOLE_SSO_ISSUER."
        ),
    )
    console_sso_scopes: str = Field(
        default="openid",
        min_length=1,
        description="Scopes the console asks for, space-separated (add the one that puts the role claim in the access token, if your provider needs one).",
    )
    console_sso_audience: str | None = Field(
        default=None,
        description=(
            "Sent as `audience` with the authorization request, for providers that issue a JWT access "
            "token only for a named API (Auth0): one of the audiences Envoy accepts. Unset: not sent."
        ),
    )
    console_sso_connect_origins: str | None = Field(
        default=None,
        description=(
            "More origins the page may call, space-separated, when the provider's token endpoint is "
            "not on its issuer's origin (the page's Content-Security-Policy allows 'self' and the "
            "issuer's origin only)."
        ),
    )

    @field_validator("console_sso_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is not None:
            origin(value)
            if urlsplit(value).query or urlsplit(value).fragment:
                raise ValueError(f"must have no query or fragment, got {value!r}")
        return value

    @field_validator("console_sso_connect_origins")
    @classmethod
    def _origins(cls, value: str | None) -> str | None:
        for item in (value or "").split():
            if origin(item) != item.rstrip("/"):
                raise ValueError(f"must be origins (scheme://host[:port]) only, got {item!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ConsoleSettings:
        if self.console_sso_issuer is None:
            given = [n for n in ("console_sso_client_id", "console_sso_audience") if getattr(self, n)]
            if given or (self.console_sso_connect_origins or "").strip():
                raise ValueError(
                    f"{ENV_PREFIX}CONSOLE_SSO_ISSUER is unset, so single sign-on is off, but "
                    f"{', '.join(env_name(n) for n in given) or env_name('console_sso_connect_origins')} is set"
                )
        elif not self.console_sso_client_id:
            raise ValueError(
                f"{env_name('console_sso_client_id')} is needed with {env_name('console_sso_issuer')}"
            )
        return self

    def config(self) -> ConsoleConfig:
        if self.console_sso_issuer is None or self.console_sso_client_id is None:
            return ConsoleConfig()
        sso = SsoClient(
            issuer=self.console_sso_issuer,
            client_id=self.console_sso_client_id,
            scopes=self.console_sso_scopes,
            audience=self.console_sso_audience,
        )
        extra = tuple(o.rstrip("/") for o in (self.console_sso_connect_origins or "").split())
        origins = tuple(dict.fromkeys((origin(sso.issuer), *extra)))
        return ConsoleConfig(sso=sso, connect_origins=origins)


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def describe(error: ValidationError) -> str:
    """A settings error in the environment's own names: `SENSORMESH_X: what is wrong`."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{env_name(where)}: {message}" if where else message)
    return "; ".join(lines)
