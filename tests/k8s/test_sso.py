"""Single sign-on on Kubernetes: trust in the forwarded identity only where Envoy is the only way in.

k8s/components/sso (used by k8s/overlays/production-sso) turns it on: the
production Envoy config with the jwt_authn filter, and the trust flag on the
pods that serve operator RPCs (query, control). These tests check that the flag
is set nowhere else, that every pod that trusts the header is reachable on its
gRPC port from Envoy alone
(by the NetworkPolicy evaluator of test_network_policies), and that the Envoy
config differs from production's by the filter and its JWKS cluster only, and that the
console's client settings name the same provider.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensormesh_cli.stack.envoy_proxy import envoy_binary
from sensormesh_cli.stack.envoy_sso import FORWARDED_IDENTITY_HEADER, JWKS_CLUSTER
from sensormesh_console.settings import ConsoleSettings
from sensormesh_core.access.forwarded import FORWARDED_IDENTITY_HEADER as SERVICE_HEADER
from tests.k8s.manifests import K8S, Manifests
from tests.k8s.test_envoy_config import (
    DESCRIPTOR,
    PRODUCTION_CONFIG,
    SERVING_COMPONENT,
    SSO_CONFIG,
    connection_manager,
    load_config,
    transcoder_descriptor_path,
)
from tests.k8s.test_network_policies import INTERNET, NAMESPACE, Endpoint, _pods, flows

TRUST = "SENSORMESH_TRUST_FORWARDED_IDENTITY"
ENVOY_LABELS = {"app.kubernetes.io/name": "sensormesh", "app.kubernetes.io/component": "envoy"}


def _trusting(manifests: Manifests) -> set[str]:
    """Workloads with a container told to trust the forwarded identity."""
    found = set()
    for workload in manifests.workloads():
        for container in workload.containers():
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if str(env.get(TRUST, "false")).lower() == "true":
                found.add(workload.name)
    return found


def test_only_the_sso_overlay_trusts_and_only_its_query_and_control_pods(
    rendered: dict[str, Manifests],
) -> None:
    assert {name: _trusting(m) for name, m in rendered.items()} == {
        "base": set(),
        "small": set(),
        "production": set(),
        "production-sso": {"query", "control"},
    }
    for manifests in rendered.values():
        config = manifests.config_map_data(manifests.generated("sensormesh-config"))
        assert TRUST not in config, f"{manifests.name}: the shared ConfigMap reaches every container"


def test_every_pod_serving_operator_rpcs_trusts_with_the_same_claims(rendered: dict[str, Manifests]) -> None:
    """An operator signed in with SSO reaches every operator RPC (a pod left out would
    answer 401), and each pod reads the caller and role from the same claims."""
    manifests = rendered["production-sso"]
    operator_pods = set(SERVING_COMPONENT.values()) - {"ingest"}
    assert _trusting(manifests) == operator_pods
    claims = set()
    for name in operator_pods:
        env = {e["name"]: e.get("value") for e in manifests.workload(name).pod["containers"][0]["env"]}
        claims.add((env.get("SENSORMESH_SSO_SUBJECT_CLAIM"), env.get("SENSORMESH_SSO_ROLE_CLAIM")))
    assert claims == {("sub", "sensormesh_role")}


def test_pods_that_trust_the_header_are_reached_from_envoy_only(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["production-sso"]
    pods = _pods(manifests)
    strangers = [
        Endpoint("debug-pod", NAMESPACE, {"run": "debug"}),
        Endpoint("other-namespace-envoy", "default", ENVOY_LABELS),
        Endpoint("monitoring", "observability", {"app": "prometheus"}),
        INTERNET,
    ]
    for target in (p for p in pods if p.name in _trusting(manifests)):
        for port in set(target.ports.values()):
            reaching = {
                s.name for s in [*pods, *strangers] if s != target and flows(manifests, s, target, port)
            }
            assert reaching == {"envoy"}, f"{target.name}:{port} is reachable from {reaching}"


def _without_sso(config: dict[str, Any]) -> dict[str, Any]:
    manager = connection_manager(config)
    names = [f["name"] for f in manager["http_filters"]]
    assert names.index("sensormesh.forwarded_identity.strip") < names.index("envoy.filters.http.jwt_authn")
    manager["http_filters"] = [
        f for f in manager["http_filters"] if f["name"] != "envoy.filters.http.jwt_authn"
    ]
    config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"] = manager
    config["static_resources"]["clusters"] = [
        c for c in config["static_resources"]["clusters"] if c["name"] != JWKS_CLUSTER
    ]
    return config


def test_the_sso_config_is_production_with_jwt_authn_only() -> None:
    sso = load_config(SSO_CONFIG)
    (jwt_filter,) = [f for f in connection_manager(sso)["http_filters"] if f["name"].endswith("jwt_authn")]
    provider = jwt_filter["typed_config"]["providers"]["sso"]
    idp = yaml.safe_load((K8S / "components" / "sso" / "sso.yaml").read_text())
    assert provider["issuer"] == idp["issuer"] and provider["audiences"] == idp["audiences"]
    assert provider["remote_jwks"]["http_uri"]["uri"] == idp["jwks_uri"]
    assert provider["forward_payload_header"] == FORWARDED_IDENTITY_HEADER == SERVICE_HEADER
    assert _without_sso(sso) == load_config(PRODUCTION_CONFIG)


def test_every_envoy_config_strips_a_client_sent_identity_before_any_filter_reads_it() -> None:
    for path in (PRODUCTION_CONFIG, SSO_CONFIG, K8S / "base" / "config" / "envoy.yaml"):
        filters = connection_manager(load_config(path))["http_filters"]
        names = [f["name"] for f in filters]
        strip = names.index("sensormesh.forwarded_identity.strip")
        assert names[:strip] in ([], ["envoy.filters.http.health_check"]), (path, names)
        mutations = filters[strip]["typed_config"]["mutations"]["request_mutations"]
        assert {"remove": FORWARDED_IDENTITY_HEADER} in mutations


def test_the_sso_config_is_accepted_by_envoy(tmp_path: Path) -> None:
    """Validated with the production listener's certificate swapped for a local CA's."""
    from sensormesh_cli.stack.local_ca import ensure_local_tls

    tls = ensure_local_tls(tmp_path)
    secret = (SSO_CONFIG.parent / "listener-tls.yaml").read_text()
    secret = secret.replace("/etc/envoy/tls/tls.crt", str(tls.server_cert)).replace(
        "/etc/envoy/tls/tls.key", str(tls.server_key)
    )
    (tmp_path / "listener-tls.yaml").write_text(secret.replace("/etc/envoy/tls", str(tls.folder)))
    config = SSO_CONFIG.read_text().replace(transcoder_descriptor_path(load_config()), str(DESCRIPTOR))
    (tmp_path / "envoy.yaml").write_text(
        config.replace("/etc/envoy/listener-tls.yaml", str(tmp_path / "listener-tls.yaml"))
    )
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "--disable-hot-restart", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deprecated field" not in result.stdout + result.stderr


def test_the_console_offers_single_sign_on_with_the_provider_envoy_checks(
    rendered: dict[str, Manifests], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's client settings (console-sso.env) name sso.yaml's issuer and one of its
    audiences, and pass the console's own settings checks; only the SSO overlay has them."""
    for name, manifests in rendered.items():
        env_from = manifests.workload("console").pod["containers"][0].get("envFrom", [])
        refs = [e["configMapRef"]["name"] for e in env_from]
        assert refs == ([manifests.generated("console-sso")] if name == "production-sso" else []), name
    manifests = rendered["production-sso"]
    console = manifests.config_map_data(manifests.generated("console-sso"))
    idp = yaml.safe_load((K8S / "components" / "sso" / "sso.yaml").read_text())
    assert console["SENSORMESH_CONSOLE_SSO_ISSUER"] == idp["issuer"]
    assert console.get("SENSORMESH_CONSOLE_SSO_AUDIENCE", idp["audiences"][0]) in idp["audiences"]
    for variable in list(os.environ):
        if variable.startswith("SENSORMESH_CONSOLE_"):
            monkeypatch.delenv(variable)
    for variable, value in console.items():
        monkeypatch.setenv(variable, value)
    config = ConsoleSettings(_env_file=None).config()  # type: ignore[call-arg]
    assert config.sso is not None and config.sso.client_id
