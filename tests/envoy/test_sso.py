"""Single sign-on through the real Envoy: its jwt_authn filter in front of real query services.

The test is its own identity provider: an RSA key pair and its JWKS
(tests/support/identity_provider.py), served over HTTP to one Envoy (remote JWKS through a rendered cluster)
and given inline to the other. One query service trusts the identity Envoy
forwards (SENSORMESH_TRUST_FORWARDED_IDENTITY), the other does not.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from sensormesh.v1 import device_pb2, device_pb2_grpc, query_pb2, query_pb2_grpc

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess, RateLimits, start_envoy
from sensormesh_cli.stack.envoy_sso import SingleSignOn, jwks_cluster, jwt_authn_filter
from sensormesh_core.access.principal import ROLE_VIEWER
from tests.support.access import make_key
from tests.support.identity_provider import TokenSigner, new_private_key
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess

ISSUER = "https://login.test.sensormesh.dev/"
AUDIENCE = "sensormesh"
ROLE_CLAIM = "https://sensormesh.dev/role"  # a namespaced claim, as Auth0 and Okta write them


@dataclass
class SsoStack:
    trusting: EnvoyProcess  # SSO Envoy -> query that trusts the forwarded identity
    ignoring: EnvoyProcess  # SSO Envoy -> query that does not
    plain: EnvoyProcess  # Envoy without single sign-on -> the trusting query
    idp: TokenSigner
    viewer_key: str
    admin_key: str
    trusting_query_port: int


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[TokenSigner, str]]:
    """The provider and the URL of its JWKS, served over HTTP on a free port."""
    idp = TokenSigner(ISSUER, AUDIENCE, ROLE_CLAIM)
    handler = type("Handler", (_JwksHandler,), {"body": idp.jwks.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()


def _query(logs: Path, name: str, database_url: str, trust: bool) -> ServiceProcess:
    env = {
        "SENSORMESH_DATABASE_URL": database_url,
        "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0",
        "SENSORMESH_TRUST_FORWARDED_IDENTITY": str(trust).lower(),
        "SENSORMESH_SSO_ROLE_CLAIM": ROLE_CLAIM,
        "SENSORMESH_STREAM_RECHECK_INTERVAL": "PT1S",  # live feeds re-check their caller every second
    }
    return ServiceProcess(["query"], env, logs / f"{name}.log")


def _envoy(logs: Path, query_port: int, sso: SingleSignOn | None) -> EnvoyProcess:
    options = EnvoyOptions(
        listen_port=free_port(),
        admin_port=free_port(),
        ingest=("127.0.0.1", query_port),  # no ingest: these tests call operator RPCs only
        query=("127.0.0.1", query_port),
        health_check_interval_s=1.0,
        rate_limits=RateLimits.every(100_000),
        sso=sso,
    )
    folder = logs / f"envoy-{query_port}-{'sso' if sso else 'plain'}"
    folder.mkdir()
    return start_envoy(options, log_dir=folder)


@pytest.fixture(scope="module")
def sso_stack(
    module_database_url: str,
    jwks_server: tuple[TokenSigner, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SsoStack]:
    idp, jwks_uri = jwks_server
    logs = tmp_path_factory.mktemp("sso")
    trusting_query = _query(logs, "query-trusting", module_database_url, trust=True)
    ignoring_query = _query(logs, "query-ignoring", module_database_url, trust=False)
    envoys: list[EnvoyProcess] = []
    try:
        trusting_port, ignoring_port = trusting_query.wait_serving(), ignoring_query.wait_serving()
        envoys.append(_envoy(logs, trusting_port, SingleSignOn(ISSUER, (AUDIENCE,), jwks_uri=jwks_uri)))
        envoys.append(_envoy(logs, ignoring_port, SingleSignOn(ISSUER, (AUDIENCE,), jwks_inline=idp.jwks)))
        envoys.append(_envoy(logs, trusting_port, None))
        viewer_key = asyncio.run(
            make_key(module_database_url, f"sso-viewer-{uuid.uuid4().hex[:6]}", ROLE_VIEWER)
        )
        admin_key = asyncio.run(make_key(module_database_url, f"sso-admin-{uuid.uuid4().hex[:6]}"))
        yield SsoStack(*envoys, idp, viewer_key, admin_key, trusting_port)
    finally:
        for envoy in envoys:
            envoy.stop()
        for process in (trusting_query, ignoring_query):
            process.process.terminate()
        assert [trusting_query.stop(), ignoring_query.stop()] == [0, 0]


@pytest.fixture
async def client(sso_stack: SsoStack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the Envoy whose query service trusts the forwarded identity."""
    async with httpx.AsyncClient(base_url=sso_stack.trusting.base_url, timeout=20) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def forged(subject: str, role: str) -> dict[str, str]:
    """The header Envoy would forward for a verified JWT, written by the client instead."""
    payload = json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": subject, ROLE_CLAIM: role})
    return {"x-sensormesh-identity": base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")}


async def _device(client: httpx.AsyncClient, admin_key: str) -> str:
    device_id = f"sso-{uuid.uuid4().hex[:8]}"
    created = await client.post("/v1/devices", json={"deviceId": device_id}, headers=bearer(admin_key))
    assert created.status_code == 200, created.text
    return device_id


async def test_a_viewer_jwt_reads_devices_and_is_refused_a_delete(
    client: httpx.AsyncClient, sso_stack: SsoStack
) -> None:
    device_id = await _device(client, sso_stack.admin_key)
    viewer = bearer(sso_stack.idp.token("vera@example.com", "viewer"))
    listed = await client.get("/v1/devices", headers=viewer)
    assert listed.status_code == 200, listed.text
    assert device_id in {d["deviceId"] for d in listed.json()["devices"]}
    deleted = await client.delete(f"/v1/devices/{device_id}", headers=viewer)
    assert deleted.status_code == 403, deleted.text
    message = deleted.json()["message"]
    assert "admin role" in message and "sso:vera@example.com has the viewer role" in message
    still = await client.get(f"/v1/devices/{device_id}", headers=viewer)
    assert still.status_code == 200, still.text


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong_audience", "wrong_issuer", "wrongly_signed", "not_a_jwt"],
)
async def test_a_jwt_that_fails_verification_is_refused_by_envoy(
    client: httpx.AsyncClient, sso_stack: SsoStack, case: str
) -> None:
    idp, now = sso_stack.idp, int(time.time())
    token = {
        "expired": lambda: idp.token("eve", "admin", exp=now - 600, iat=now - 900),
        "wrong_audience": lambda: idp.token("eve", "admin", aud="another-api"),
        "wrong_issuer": lambda: idp.token("eve", "admin", iss="https://evil.example.com/"),
        "wrongly_signed": lambda: idp.token("eve", "admin", signing_key=new_private_key()),
        "not_a_jwt": lambda: "eyJhbGciOiJub25lIn0.e30.",
    }[case]()
    response = await client.get("/v1/devices", headers=bearer(token))
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == 16 and body["details"][0]["reason"] == "SSO_TOKEN_INVALID", body


async def test_a_bad_jwt_over_grpc_is_unauthenticated(sso_stack: SsoStack) -> None:
    token = sso_stack.idp.token("eve", "admin", aud="another-api")
    target = f"127.0.0.1:{sso_stack.trusting.options.listen_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListDevices(
                device_pb2.ListDevicesRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_api_keys_pass_the_jwt_filter_untouched(client: httpx.AsyncClient, sso_stack: SsoStack) -> None:
    assert (await client.get("/v1/devices", headers=bearer(sso_stack.viewer_key))).status_code == 200
    unknown = await client.get("/v1/devices", headers=bearer("smak_not-a-real-key"))
    assert unknown.status_code == 401, unknown.text
    # The service's own answer, not rewritten by Envoy's local reply for JWT refusals.
    assert unknown.json()["message"] == "unknown API key"
    assert unknown.json()["details"][0]["reason"] == "API_KEY_UNKNOWN", unknown.json()
    device = await client.get("/v1/devices", headers=bearer("smdt_a-device-token"))
    assert device.status_code == 403, device.text


async def test_a_forged_identity_header_is_not_trusted(
    client: httpx.AsyncClient, sso_stack: SsoStack
) -> None:
    device_id = await _device(client, sso_stack.admin_key)
    alone = await client.delete(f"/v1/devices/{device_id}", headers=forged("mallory", "admin"))
    assert alone.status_code == 401, alone.text
    with_key = {**bearer(sso_stack.viewer_key), **forged("mallory", "admin")}
    riding = await client.delete(f"/v1/devices/{device_id}", headers=with_key)
    assert riding.status_code == 403, riding.text
    assert "has the viewer role" in riding.json()["message"] and "sso:" not in riding.json()["message"]
    viewer_jwt = {**bearer(sso_stack.idp.token("vera@example.com", "viewer")), **forged("mallory", "admin")}
    replaced = await client.delete(f"/v1/devices/{device_id}", headers=viewer_jwt)
    assert replaced.status_code == 403 and "sso:vera@example.com" in replaced.json()["message"]
    assert (
        await client.get(f"/v1/devices/{device_id}", headers=bearer(sso_stack.admin_key))
    ).status_code == 200


async def test_without_single_sign_on_envoy_still_removes_a_client_sent_identity(
    sso_stack: SsoStack,
) -> None:
    """jwt_authn drops a client's copy of its payload header itself; Envoy's own filter does it
    when there is no jwt_authn, so a service told to trust the header is safe behind any config."""
    async with httpx.AsyncClient(base_url=sso_stack.plain.base_url, timeout=20) as http:
        device_id = await _device(http, sso_stack.admin_key)
        alone = await http.get("/v1/devices", headers=forged("mallory", "admin"))
        assert alone.status_code == 401, alone.text
        with_key = {**bearer(sso_stack.viewer_key), **forged("mallory", "admin")}
        riding = await http.delete(f"/v1/devices/{device_id}", headers=with_key)
        assert riding.status_code == 403 and "sso:" not in riding.json()["message"], riding.text


async def test_a_jwt_without_the_role_claim_is_refused_naming_it(
    client: httpx.AsyncClient, sso_stack: SsoStack
) -> None:
    for role in (None, "superuser"):
        response = await client.get("/v1/devices", headers=bearer(sso_stack.idp.token("nora", role)))
        assert response.status_code == 403, response.text
        assert f"{ROLE_CLAIM!r} claim" in response.json()["message"]


async def test_without_trust_the_forwarded_identity_is_ignored(sso_stack: SsoStack) -> None:
    async with httpx.AsyncClient(base_url=sso_stack.ignoring.base_url, timeout=20) as http:
        valid = await http.get("/v1/devices", headers=bearer(sso_stack.idp.token("vera", "admin")))
        assert valid.status_code == 401, valid.text
        assert "unknown API key" in valid.json()["message"]
        keyed = await http.get("/v1/devices", headers=bearer(sso_stack.viewer_key))
        assert keyed.status_code == 200, keyed.text
        # Envoy still verifies: a bad JWT never reaches the service.
        bad = await http.get("/v1/devices", headers=bearer(sso_stack.idp.token("vera", "admin", aud="x")))
        assert bad.status_code == 401 and bad.json()["details"][0]["reason"] == "SSO_TOKEN_INVALID"


async def test_the_audit_log_names_the_sso_subject(client: httpx.AsyncClient, sso_stack: SsoStack) -> None:
    subject = f"ops-{uuid.uuid4().hex[:6]}@example.com"
    device_id = f"sso-{uuid.uuid4().hex[:8]}"
    operator = bearer(sso_stack.idp.token(subject, "operator"))
    created = await client.post("/v1/devices", json={"deviceId": device_id}, headers=operator)
    assert created.status_code == 200, created.text
    refused = await client.delete(f"/v1/devices/{device_id}", headers=operator)
    assert refused.status_code == 403, refused.text
    events = await client.get(
        "/v1/auditEvents", params={"actor": f"sso:{subject}"}, headers=bearer(sso_stack.admin_key)
    )
    assert events.status_code == 200, events.text
    methods = [e["method"] for e in events.json()["auditEvents"]]
    assert any(m.endswith("CreateDevice") for m in methods), events.json()
    assert any(m.endswith("DeleteDevice") for m in methods), events.json()


async def test_the_trusting_service_believes_the_header_from_whoever_reaches_its_port(
    sso_stack: SsoStack,
) -> None:
    """Why Envoy strips the header and must be the only way in (Kubernetes: the NetworkPolicies)."""
    metadata = tuple(forged("mallory", "viewer").items())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sso_stack.trusting_query_port}") as channel:
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        await stub.ListDevices(device_pb2.ListDevicesRequest(), metadata=metadata)


def test_single_sign_on_needs_exactly_one_jwks_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SingleSignOn(ISSUER, (AUDIENCE,))
    with pytest.raises(ValueError, match="exactly one"):
        SingleSignOn(ISSUER, (AUDIENCE,), jwks_uri="https://x/jwks", jwks_inline="{}")
    with pytest.raises(ValueError, match="audience"):
        SingleSignOn(ISSUER, (), jwks_inline="{}")


def test_a_remote_https_jwks_is_fetched_through_a_verified_cluster() -> None:
    sso = SingleSignOn(ISSUER, (AUDIENCE,), jwks_uri="https://login.example.com/keys")
    cluster = jwks_cluster(sso)
    assert cluster is not None
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "login.example.com", "port_value": 443}
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "login.example.com"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "login.example.com"}}
    ]
    assert jwks_cluster(SingleSignOn(ISSUER, (AUDIENCE,), jwks_inline="{}")) is None


def test_keys_and_device_tokens_are_exempt_and_everything_else_verified_or_absent() -> None:
    rules = jwt_authn_filter(SingleSignOn(ISSUER, (AUDIENCE,), jwks_inline="{}"))["typed_config"]["rules"]
    exempt = [r for r in rules if "requires" not in r]
    assert [r["match"]["headers"][0]["string_match"]["prefix"] for r in exempt] == [
        "Bearer smak_",
        "Bearer smdt_",
    ]
    (last,) = [r for r in rules if "requires" in r]
    assert rules[-1] is last and last["match"] == {"prefix": "/"}
    assert last["requires"]["requires_any"]["requirements"] == [
        {"provider_name": "sso"},
        {"allow_missing": {}},
    ]


async def test_a_live_feed_opened_with_a_jwt_outlives_its_rechecks(sso_stack: SsoStack) -> None:
    """Streams re-check their caller every second here: a valid JWT's feed is not ended by them."""
    async with httpx.AsyncClient(base_url=sso_stack.trusting.base_url, timeout=20) as http:
        device_id = await _device(http, sso_stack.admin_key)
    token = sso_stack.idp.token("vera@example.com", "viewer")
    target = f"127.0.0.1:{sso_stack.trusting.options.listen_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        feed = stub.WatchReadings(
            query_pb2.WatchReadingsRequest(device_id=device_id),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        # No reading arrives; a refusal by a re-check would end the feed within about a second.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(feed.read(), timeout=3.5)
        feed.cancel()
