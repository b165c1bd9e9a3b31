"""k8s/components/grafana added to the shipped overlays: what it renders passes the
checks every shipped kustomization passes, Grafana reaches the database and
nothing else, and its provisioning names what the cluster and the role script
define.

The component is optional, so no shipped overlay includes it; each test renders
an overlay of its own beside the shipped ones, as the README tells operators to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.k8s import test_cross_references as references
from tests.k8s import test_network_policies as policies
from tests.k8s.manifests import K8S, ROOT, Doc, Manifests, Workload, container_ports, probes, render
from tests.k8s.test_schemas import NEWEST, OLDEST_SUPPORTED

COMPONENT = K8S / "components" / "grafana"
ROLE = "sensormesh_grafana"
GRAFANA_SECRETS = {("grafana-admin", "password"), ("grafana-database", "password")}


@pytest.fixture(scope="module", params=["small", "production"])
def with_grafana(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    """An overlay of the operator's: a shipped one plus the component."""
    folder = tmp_path_factory.mktemp(f"grafana-{request.param}")
    # kustomize refuses absolute paths; relative ones may leave the kustomization's folder.
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / request.param, folder)],
        "components": [os.path.relpath(COMPONENT, folder)],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return Manifests(f"{request.param}+grafana", render(folder))


def _grafana(manifests: Manifests) -> Workload:
    return manifests.workload("grafana")


def test_the_shipped_overlays_run_no_grafana(rendered: dict[str, Manifests]) -> None:
    for manifests in rendered.values():
        assert not manifests.has("Deployment", "grafana"), manifests.name


def test_the_shared_cross_reference_checks_hold(with_grafana: Manifests) -> None:
    references.test_every_service_selects_pods_that_serve_its_target_ports(with_grafana)
    references.test_controllers_select_their_own_pod_templates(with_grafana)
    references.test_each_pod_template_is_selected_by_its_controller_only(with_grafana)
    references.test_probes_use_declared_ports(with_grafana)
    references.test_config_maps_and_their_keys_exist(with_grafana)
    references.test_files_named_on_command_lines_are_mounted(with_grafana)


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, NEWEST])
def test_every_manifest_is_valid_for_the_kubernetes_schema(with_grafana: Manifests, version: str) -> None:
    for doc in with_grafana.docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_everything_is_in_the_namespace_and_no_secret_is_rendered(with_grafana: Manifests) -> None:
    for doc in with_grafana.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "sensormesh", doc["metadata"]["name"]
    assert with_grafana.kind("Secret") == []
    assert (
        with_grafana.get("Service", "grafana")["metadata"]["labels"]["app.kubernetes.io/part-of"]
        == "sensormesh"
    )


def test_grafana_runs_pinned_non_root_and_read_only(with_grafana: Manifests) -> None:
    pod = _grafana(with_grafana).pod
    (container,) = pod["containers"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", container["image"]), container["image"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert {kind for kind, _ in probes(container)} == {
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
    }
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/grafana", "/tmp"}


def test_grafana_reaches_the_database_only_and_nothing_reaches_it(with_grafana: Manifests) -> None:
    pods = policies._pods(with_grafana)
    allowed = {
        (source.name, target.name, port)
        for source in pods
        for target in pods
        for port in set(target.ports.values())
        if source != target and policies.flows(with_grafana, source, target, port)
    }
    needed = policies.NEEDED | {("grafana", "timescaledb", 5432)}
    assert allowed == needed, f"missing: {needed - allowed}, extra: {allowed - needed}"
    (grafana,) = [p for p in pods if p.name == "grafana"]
    for port in policies.INTERNET.ports.values():
        assert not policies.flows(with_grafana, grafana, policies.INTERNET, port)
    assert not policies.flows(with_grafana, policies.INTERNET, grafana, 3000)
    for protocol in ("UDP", "TCP"):
        assert policies.flows(with_grafana, grafana, policies.KUBE_DNS, 53, protocol)


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def test_grafana_takes_its_passwords_from_the_documented_secrets(with_grafana: Manifests) -> None:
    (container,) = _grafana(with_grafana).pod["containers"]
    referenced = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in _env(container).values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert referenced == GRAFANA_SECRETS
    readme = (ROOT / "README.md").read_text()
    for name, key in GRAFANA_SECRETS:
        assert f"create secret generic {name}" in readme and f"--from-literal={key}=" in readme


def _mounted(manifests: Manifests, mount_path: str) -> dict[str, str]:
    """The data of the ConfigMap mounted at `mount_path` in Grafana's container."""
    workload = _grafana(manifests)
    (container,) = workload.pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in workload.pod["volumes"] if v["name"] == mount["name"]]
    return manifests.config_map_data(volume["configMap"]["name"])


def test_the_data_source_is_the_clusters_database_as_the_read_only_role(with_grafana: Manifests) -> None:
    data = _mounted(with_grafana, "/etc/grafana/provisioning/datasources")
    (source,) = yaml.safe_load(data["datasources.yaml"])["datasources"]
    assert source["type"] == "grafana-postgresql-datasource" and source["jsonData"]["timescaledb"] is True
    assert source["user"] == ROLE
    assert f"\\set grafana_role {ROLE}" in (COMPONENT / "grafana_role.sql").read_text()
    database = with_grafana.workload("timescaledb").pod["containers"][0]
    host, port = source["url"].split(":")
    assert host == with_grafana.get("StatefulSet", "timescaledb")["spec"]["serviceName"]
    assert int(port) == container_ports(database)["postgres"]
    assert source["jsonData"]["database"] == _env(database)["POSTGRES_DB"]["value"]
    # The in-cluster server serves no TLS: a stricter sslmode would fail to connect.
    assert source["jsonData"]["sslmode"] == "disable"
    variable = re.fullmatch(r"\$(\w+)", source["secureJsonData"]["password"])
    assert variable and variable[1] in _env(_grafana(with_grafana).pod["containers"][0])


def test_the_dashboards_are_provisioned_from_their_config_map(with_grafana: Manifests) -> None:
    providers = _mounted(with_grafana, "/etc/grafana/provisioning/dashboards")
    (provider,) = yaml.safe_load(providers["dashboards.yaml"])["providers"]
    dashboards = _mounted(with_grafana, provider["options"]["path"])
    committed = {p.name: p.read_text() for p in (COMPONENT / "dashboards").glob("*.json")}
    assert dashboards == committed
    (container,) = _grafana(with_grafana).pod["containers"]
    home = Path(_env(container)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]["value"])
    assert str(home.parent) == provider["options"]["path"] and home.name in dashboards
    # kubectl apply keeps the whole object in an annotation, limited to 256 KiB.
    assert sum(len(text) for text in dashboards.values()) < 200_000


def test_the_database_has_room_for_grafanas_connections(with_grafana: Manifests) -> None:
    data = _mounted(with_grafana, "/etc/grafana/provisioning/datasources")
    (source,) = yaml.safe_load(data["datasources.yaml"])["datasources"]
    maxima = {
        s: with_grafana.get("HorizontalPodAutoscaler", s)["spec"]["maxReplicas"]
        for s in references.GRPC_SERVICES
    }
    pools = sum(pods * references._pool_max_size(with_grafana, s) for s, pods in maxima.items())
    args = with_grafana.workload("timescaledb").pod["containers"][0].get("args", [])
    limit = next((int(a.split("=")[1]) for a in args if a.startswith("max_connections=")), 100)
    assert pools + sum(maxima.values()) + source["jsonData"]["maxOpenConns"] + 10 <= limit
