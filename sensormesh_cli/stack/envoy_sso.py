"""Single sign-on in Envoy: the jwt_authn filter, rendered only when configured.

The operator's identity provider signs JWTs; Envoy checks each bearer JWT
(signature against the provider's JWKS, issuer, audience, expiry) and forwards
the verified payload, base64url JSON, in `x-sensormesh-identity`, which the
services read (`sensormesh_core.access.forwarded`) when they trust it. Envoy's
config removes any client-sent copy of that header first, always
(envoy/envoy.yaml, `sensormesh.forwarded_identity.strip`).

API keys (`smak_`) and device tokens (`smdt_`) travel in the same
`authorization: Bearer` header. The filter's rules tell them apart by that
prefix, which a JWT (base64url JSON, so `eyJ...`) never has:

- a bearer with either prefix: no JWT requirement; it reaches the service
  untouched, which checks it as before;
- any other request: `requires_any` of the provider or `allow_missing`, so a
  request with no bearer at all passes (the service answers UNAUTHENTICATED
  or serves an open RPC), and a bearer that is present but is not a valid JWT
  of the provider (expired, another audience, a bad signature, garbage) is
  refused by Envoy with 401 / UNAUTHENTICATED, before any service sees it.

`allow_missing_or_failed` would also let keys through, but would turn a bad
JWT into an anonymous request answered "unknown API key": the prefix rules
give the caller the true reason and keep bad tokens out of the services.

The JWT stays in `authorization` (`forward: true`): the per-credential rate
limit keys on that header. Which claim carries the role is the services'
setting (SENSORMESH_SSO_ROLE_CLAIM): Envoy forwards the whole payload, and one
place decides what a claim means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FORWARDED_IDENTITY_HEADER = "x-sensormesh-identity"  # sensormesh_core.access.forwarded reads it
PROVIDER = "sso"
JWKS_CLUSTER = "sso_jwks"
# The Envoy images' CA bundle (Debian/Ubuntu path), to verify an https JWKS endpoint.
SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")
CREDENTIAL_PREFIXES = ("smak_", "smdt_")  # sensormesh_core.tokens: API keys, device tokens


@dataclass(frozen=True)
class SingleSignOn:
    """The identity provider whose JWTs Envoy accepts: exactly one JWKS source.

    `jwks_uri` is fetched (and cached for `jwks_cache_s`) through a cluster
    rendered from it (https verified against `jwks_ca_file`); `jwks_inline`
    (the JWKS JSON) or `jwks_file` are local.
    """

    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str | None = None
    jwks_inline: str | None = None
    jwks_file: Path | None = None
    jwks_ca_file: Path = SYSTEM_CA_FILE
    jwks_cache_s: int = 300
    clock_skew_s: int = 60

    def __post_init__(self) -> None:
        sources = [s for s in (self.jwks_uri, self.jwks_inline, self.jwks_file) if s is not None]
        if len(sources) != 1:
            raise ValueError("single sign-on needs exactly one of jwks_uri, jwks_inline, jwks_file")
        if not self.issuer or not self.audiences:
            raise ValueError("single sign-on needs an issuer and at least one audience")


def jwt_authn_filter(sso: SingleSignOn) -> dict[str, Any]:
    """The jwt_authn HTTP filter for `sso` (see the module's docstring for the rules)."""
    provider: dict[str, Any] = {
        "issuer": sso.issuer,
        "audiences": list(sso.audiences),
        # Only the authorization header: not Envoy's default `access_token` query parameter.
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": True,
        "forward_payload_header": FORWARDED_IDENTITY_HEADER,
        "clock_skew_seconds": sso.clock_skew_s,
        **_jwks(sso),
    }
    passing = [
        {
            "match": {
                "prefix": "/",
                "headers": [
                    {"name": "authorization", "string_match": {"prefix": f"Bearer {p}", "ignore_case": True}}
                ],
            }
        }
        for p in CREDENTIAL_PREFIXES
    ]
    verified = {
        "match": {"prefix": "/"},
        "requires": {"requires_any": {"requirements": [{"provider_name": PROVIDER}, {"allow_missing": {}}]}},
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {PROVIDER: provider},
            "rules": [*passing, verified],
        },
    }


def _jwks(sso: SingleSignOn) -> dict[str, Any]:
    if sso.jwks_inline is not None:
        return {"local_jwks": {"inline_string": sso.jwks_inline}}
    if sso.jwks_file is not None:
        return {"local_jwks": {"filename": str(sso.jwks_file)}}
    assert sso.jwks_uri is not None
    return {
        "remote_jwks": {
            "http_uri": {"uri": sso.jwks_uri, "cluster": JWKS_CLUSTER, "timeout": "5s"},
            "cache_duration": f"{sso.jwks_cache_s}s",
            # Fetched at start-up and refreshed before it expires, not on a caller's request.
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        }
    }


def jwks_cluster(sso: SingleSignOn) -> dict[str, Any] | None:
    """The cluster that reaches `sso.jwks_uri`, or None for a local JWKS."""
    if sso.jwks_uri is None:
        return None
    url = urlsplit(sso.jwks_uri)
    if url.scheme not in ("http", "https") or url.hostname is None:
        raise ValueError(f"jwks_uri must be an http(s) URL: {sso.jwks_uri!r}")
    tls = url.scheme == "https"
    cluster: dict[str, Any] = {
        "name": JWKS_CLUSTER,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": url.hostname,
                                        "port_value": url.port or (443 if tls else 80),
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": url.hostname,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": str(sso.jwks_ca_file)},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": url.hostname}}
                        ],
                    }
                },
            },
        }
    return cluster


def add_single_sign_on(config: dict[str, Any], sso: SingleSignOn) -> None:
    """Put the jwt_authn filter into `config` after the first two rate limits, and its JWKS cluster."""
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters: list[dict[str, Any]] = manager["http_filters"]
    names = [f["name"] for f in filters]
    # After the per-source and anonymous buckets (a flood of bad JWTs costs no signature checks
    # beyond them), before everything that reads the caller.
    filters.insert(names.index("sensormesh.rate_limit.anonymous") + 1, jwt_authn_filter(sso))
    cluster = jwks_cluster(sso)
    if cluster is not None:
        config["static_resources"]["clusters"].append(cluster)
