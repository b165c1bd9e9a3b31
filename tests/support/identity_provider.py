"""A test identity provider: an RSA key, its JWKS, JWTs it signs, and, served over HTTP, the
OpenID Connect pieces a browser's sign-in uses.

`TokenSigner` is the key and what it signs (tests/envoy/test_sso.py gives Envoy its JWKS
and sends its JWTs). `OidcProvider` serves, on a free loopback port:

- `/.well-known/openid-configuration`, the discovery document;
- `/.well-known/jwks.json`, the public key (Envoy's jwt_authn fetches it);
- `/authorize`, which checks the request (client id, registered redirect URI, response type,
  an S256 PKCE challenge, a state) and at once sends the browser back with a code for the user
  `sign_in_as` names: no login form, as a provider with a live session would;
- `/token`, which exchanges a code once, for the client and redirect URI it was issued to and
  only with the verifier whose S256 hash is the challenge, for an RS256 access token (audience
  the API's, the role in `role_claim`) and an ID token (audience the client id).

Browsers call discovery and the token endpoint across origins, so both answer CORS. Each
checked failure answers as a provider does: an OAuth error (`invalid_grant`, ...) with a
description.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KID = "test-key-1"


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class TokenSigner:
    """Signs JWTs for `issuer` and `audience`; its JWKS names the public key."""

    issuer: str
    audience: str
    role_claim: str
    key: rsa.RSAPrivateKey = field(default_factory=new_private_key)

    @property
    def jwks(self) -> str:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]})

    def token(self, subject: str, role: str | None = "viewer", **overrides: Any) -> str:
        """A JWT for `subject` with `role` in the role claim (None: no claim); `overrides` replace
        or add claims, `signing_key=` signs with another key."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + 300,
        }
        if role is not None:
            claims[self.role_claim] = role
        key = overrides.pop("signing_key", self.key)
        claims.update(overrides)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


def s256(verifier: str) -> str:
    """RFC 7636's S256 code challenge of a verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def tampered(token: str) -> str:
    """The JWT with one character of its signature changed: well formed, no longer valid."""
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    subject: str
    role: str
    expires: float


@dataclass
class ProviderState:
    """What the provider was told: its client, the user signed in, how its tokens come out."""

    client_id: str
    redirect_uris: set[str]
    subject: str = "olga@example.com"
    role: str = "operator"
    token_lifetime_s: int = 300
    tamper_access_tokens: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # every code and token given out (for log checks)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OidcProvider:
    """The provider on a free port of 127.0.0.1; `start()` it, `stop()` it."""

    def __init__(
        self, client_id: str, audience: str, role_claim: str, redirect_uris: set[str] | None = None
    ) -> None:
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._http.server_address[1]}/"
        self.signer = TokenSigner(self.issuer, audience, role_claim)
        self.state = ProviderState(client_id, set(redirect_uris or ()))
        self._http.provider = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, name="oidc-provider", daemon=True)

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}.well-known/jwks.json"

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def sign_in_as(
        self, subject: str, role: str, *, token_lifetime_s: int = 300, tamper: bool = False
    ) -> None:
        """Who `/authorize` signs in from now on, and how the tokens for them come out."""
        with self.state.lock:
            self.state.subject, self.state.role = subject, role
            self.state.token_lifetime_s, self.state.tamper_access_tokens = token_lifetime_s, tamper

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}authorize",
            "token_endpoint": f"{self.issuer}token",
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The URL the browser is sent back to (with a code, or an error once the redirect URI is known)."""
        s = self.state
        if query.get("client_id") != s.client_id:
            raise OAuthError("invalid_client", f"unknown client_id {query.get('client_id')!r}")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in s.redirect_uris:
            raise OAuthError("invalid_request", f"redirect_uri {redirect_uri!r} is not registered")
        separator = "#" if query.get("response_mode") == "fragment" else "?"
        answer: dict[str, str] = {"state": query.get("state", "")}
        if query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            answer.update(error="invalid_request", error_description="PKCE with S256 is required")
        else:
            code = secrets.token_urlsafe(24)
            with s.lock:
                s.grants[code] = Grant(
                    s.client_id, redirect_uri, query["code_challenge"], s.subject, s.role, time.time() + 60
                )
                s.issued.append(code)
            answer["code"] = code
        return f"{redirect_uri}{separator}{urlencode(answer)}"

    def exchange(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code grant; OAuthError if refused."""
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", f"{form.get('grant_type')!r}")
        with self.state.lock:
            grant = self.state.grants.pop(form.get("code", ""), None)  # a code is used once
            lifetime, tamper = self.state.token_lifetime_s, self.state.tamper_access_tokens
        if grant is None or grant.expires < time.time():
            raise OAuthError("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant.client_id or form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "the code was issued to another client or redirect_uri")
        if s256(form.get("code_verifier", "")) != grant.challenge:
            raise OAuthError("invalid_grant", "PKCE verification failed")
        now = int(time.time())
        access = self.signer.token(grant.subject, grant.role, iat=now, exp=now + lifetime)
        id_token = self.signer.token(grant.subject, None, aud=grant.client_id, iat=now, exp=now + lifetime)
        with self.state.lock:
            self.state.issued += [access, id_token]
        return {
            "access_token": tampered(access) if tamper else access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "id_token": id_token,
            "scope": "openid",
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "test-oidc-provider"

    @property
    def provider(self) -> OidcProvider:
        return self.server.provider  # type: ignore[attr-defined,no-any-return]

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.send_header("access-control-allow-origin", "*")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def do_OPTIONS(self) -> None:  # CORS preflight of the token request
        allow = {"access-control-allow-methods": "GET, POST", "access-control-allow-headers": "*"}
        self._send(204, b"", "text/plain", allow)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/.well-known/openid-configuration":
            self._json(200, self.provider.discovery())
        elif url.path == "/.well-known/jwks.json":
            self._send(200, self.provider.signer.jwks.encode(), "application/json")
        elif url.path == "/authorize":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                location = self.provider.authorize(query)
            except OAuthError as refused:  # no redirect to an unknown client or URI
                self._send(400, f"{refused}\n".encode(), "text/plain")
                return
            self._send(302, b"", "text/plain", {"location": location})
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/token":
            self._send(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("content-length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        try:
            self._json(200, self.provider.exchange(form))
        except OAuthError as refused:
            self._json(400, {"error": refused.error, "error_description": refused.description})

    def log_message(self, format: str, *args: object) -> None:
        pass  # codes and tokens stay out of the test output
