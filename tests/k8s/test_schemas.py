"""Every rendered manifest is valid against the Kubernetes API schemas, offline.

Validated strictly (unknown fields are errors, so a typo cannot be silently
dropped by the API server) against the oldest Kubernetes the manifests support
and the newest the schemas know. 1.30 is the floor: the containers' preStop
`sleep` action is on by default from 1.30.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from tests.k8s.manifests import K8S, KUSTOMIZATIONS, Manifests

OLDEST_SUPPORTED = "1.30.0"
NEWEST = kubernetes_validate.latest_version()


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, NEWEST])
def test_every_manifest_is_valid_for_the_kubernetes_schema(manifests: Manifests, version: str) -> None:
    failures = []
    for doc in manifests.docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not failures, f"{manifests.name} against {version}:\n" + "\n".join(failures)


def test_the_validation_rejects_a_misspelt_field(rendered: dict[str, Manifests]) -> None:
    """Proves the check above would catch what the API server would silently drop."""
    deployment = copy.deepcopy(rendered["small"].get("Deployment", "ingest"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, NEWEST, strict=True)


def test_the_oldest_schema_rejects_what_it_does_not_know(rendered: dict[str, Manifests]) -> None:
    """The floor is real: 1.28 had no preStop sleep, so it must fail there."""
    deployment = rendered["small"].get("Deployment", "ingest")
    with pytest.raises(kubernetes_validate.ValidationError, match="sleep"):
        kubernetes_validate.validate(deployment, "1.28.0", strict=True)


def test_every_namespaced_object_is_in_the_sensormesh_namespace(manifests: Manifests) -> None:
    outside = [
        f"{doc['kind']}/{doc['metadata']['name']}"
        for doc in manifests.docs
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != "sensormesh"
    ]
    assert outside == []
    assert manifests.has("Namespace", "sensormesh")


def test_no_secret_is_rendered(manifests: Manifests) -> None:
    """Secrets are created by the operator, never shipped in the repository."""
    assert manifests.kind("Secret") == []


def test_the_secret_example_is_marked_and_in_no_kustomization() -> None:
    example = K8S / "secret.example.yaml"
    assert "EXAMPLE ONLY" in example.read_text().splitlines()[0]
    for directory in KUSTOMIZATIONS.values():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed = kustomization.get("resources", []) + [
            p["path"] for p in kustomization.get("patches", []) if "path" in p
        ]
        assert not any("secret" in entry for entry in listed), directory


def test_every_kind_the_issue_asks_for_is_deployed(rendered: dict[str, Manifests]) -> None:
    for name in ("small", "production"):
        manifests = rendered[name]
        assert manifests.has("Namespace", "sensormesh")
        assert manifests.has("StatefulSet", "timescaledb")
        assert manifests.get("StatefulSet", "timescaledb")["spec"]["volumeClaimTemplates"]
        assert manifests.has("Job", "migrate")
        for service in ("ingest", "query", "control"):
            assert manifests.has("Deployment", service)
            assert manifests.has("HorizontalPodAutoscaler", service)
            assert manifests.has("PodDisruptionBudget", service)
        assert manifests.has("Deployment", "envoy")
        assert manifests.has("HorizontalPodAutoscaler", "envoy")
        assert manifests.has("Deployment", "otel-collector")
        assert manifests.has("NetworkPolicy", "default-deny")
