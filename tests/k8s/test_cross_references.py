"""The names the manifests use for each other agree: selectors, ports, probes,
ConfigMaps, Secrets, autoscaler and budget targets, images.

A manifest can be valid on its own and still deploy nothing that works: a
Service whose selector matches no pod, a probe on a port nobody listens on, a
ConfigMap key that does not exist. These tests read the rendered output the
way the API server and kubelet would and fail on every dangling name.
"""

from __future__ import annotations

import importlib
import re
import tomllib

import pytest
import yaml

from sensormesh_core.config import SensormeshSettings, StorageSettings
from tests.k8s.manifests import K8S, ROOT, Doc, Manifests, Workload, container_ports, probes

# The Secrets an operator creates (README, "Deploying to Kubernetes"), with their keys.
OPERATOR_SECRETS = {
    "timescaledb-superuser": {"password"},
    "sensormesh-database": {"password", "url"},
}
SENSORMESH_IMAGE = "ghcr.io/sensormesh/sensormesh"
# Settings the services add to StorageSettings that are agreed before their modules exist.
AGREED_SETTINGS = {"ingest_listen", "query_listen", "control_listen"}
SETTINGS_MODULES = ("ingest_service.settings", "query_service.settings", "control_service.settings")
# The gRPC services, the gRPC service each one's readiness asks for, and its listen setting.
GRPC_SERVICES = {
    "ingest": ("sensormesh.v1.IngestService", "SENSORMESH_INGEST_LISTEN"),
    "query": ("sensormesh.v1.QueryService", "SENSORMESH_QUERY_LISTEN"),
    "control": ("sensormesh.v1.CommandService", "SENSORMESH_CONTROL_LISTEN"),
}


def _project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_every_service_selects_pods_that_serve_its_target_ports(manifests: Manifests) -> None:
    for service in manifests.kind("Service"):
        name = service["metadata"]["name"]
        selected = manifests.pods_selected({"matchLabels": service["spec"]["selector"]})
        assert selected, f"{manifests.name}: Service {name} selects no pod"
        for workload in selected:
            ports = {}
            for container in workload.containers(init=False):
                ports.update(container_ports(container))
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert target in ports or target in ports.values(), (
                    f"{manifests.name}: Service {name} targets port {target!r}, "
                    f"which {workload.kind} {workload.name} does not declare ({ports})"
                )


def test_controllers_select_their_own_pod_templates(manifests: Manifests) -> None:
    for doc in manifests.docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            selector = doc["spec"]["selector"]["matchLabels"]
            assert all(labels.get(k) == v for k, v in selector.items()), doc["metadata"]["name"]


def test_each_pod_template_is_selected_by_its_controller_only(manifests: Manifests) -> None:
    """Two controllers selecting the same pods fight over them."""
    for workload in manifests.workloads():
        owners = [
            doc["metadata"]["name"]
            for doc in manifests.docs
            if doc["kind"] in ("Deployment", "StatefulSet")
            and all(workload.labels.get(k) == v for k, v in doc["spec"]["selector"]["matchLabels"].items())
        ]
        assert owners in ([workload.name], []), f"{workload.name} is selected by {owners}"


def test_statefulset_is_governed_by_a_headless_service(manifests: Manifests) -> None:
    for statefulset in manifests.kind("StatefulSet"):
        service = manifests.get("Service", statefulset["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None"


def test_probes_use_declared_ports(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        for container in workload.containers(init=False):
            ports = container_ports(container)
            for kind, probe in probes(container):
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        assert port in ports or port in ports.values(), (
                            f"{manifests.name}: {workload.name}/{container['name']} {kind} "
                            f"uses port {port}, not one of {ports}"
                        )


def test_grpc_services_are_probed_over_grpc_health(manifests: Manifests) -> None:
    """Readiness asks for the service itself, liveness for the server as a whole."""
    for name, (service, _) in GRPC_SERVICES.items():
        container = manifests.workload(name).pod["containers"][0]
        assert container["readinessProbe"]["grpc"].get("service") == service
        assert container["livenessProbe"]["grpc"].get("service", "") == ""
        assert container["startupProbe"]["grpc"]["port"] == container_ports(container)["grpc"]


def test_grpc_services_listen_on_every_interface_at_their_declared_port(manifests: Manifests) -> None:
    """The listen address (sensormesh-config, or the container's own env) is the port the pod
    declares, the Service targets and the probes call; on loopback no probe could reach it."""
    config = manifests.config_map_data(manifests.generated("sensormesh-config"))
    for name, (_, variable) in GRPC_SERVICES.items():
        container = manifests.workload(name).pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        address = env.get(variable) or config[variable]
        assert "--listen" not in container.get("args", []), f"{name}: one place for the address"
        assert address == f"0.0.0.0:{container_ports(container)['grpc']}", f"{name}: {address}"
        (port,) = manifests.get("Service", name)["spec"]["ports"]
        assert port["port"] == container_ports(container)["grpc"] and port["targetPort"] == "grpc"


def _env_sources(container: Doc) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    config_maps = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
    secret_keys, config_keys = [], []
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "secretKeyRef" in source:
            secret_keys.append((source["secretKeyRef"]["name"], source["secretKeyRef"]["key"]))
        if "configMapKeyRef" in source:
            config_keys.append((source["configMapKeyRef"]["name"], source["configMapKeyRef"]["key"]))
    return config_maps, secret_keys, config_keys


def test_config_maps_and_their_keys_exist(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        for container in workload.containers():
            config_maps, _, config_keys = _env_sources(container)
            for name in config_maps:
                assert manifests.has("ConfigMap", name), (
                    f"{workload.name}: envFrom ConfigMap {name} is missing"
                )
            for name, key in config_keys:
                assert key in manifests.config_map_data(name), f"{workload.name}: {name} has no key {key}"
        volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
        for container in workload.containers():
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in _claim_templates(manifests, workload), (
                    f"{workload.name}/{container['name']} mounts undeclared volume {mount['name']}"
                )
                volume = volumes.get(mount["name"], {})
                if "configMap" in volume:
                    data = manifests.config_map_data(volume["configMap"]["name"])
                    if "subPath" in mount:
                        assert mount["subPath"] in data, f"{workload.name}: no key {mount['subPath']}"


def _claim_templates(manifests: Manifests, workload: Workload) -> set[str]:
    if workload.kind != "StatefulSet":
        return set()
    statefulset = manifests.get("StatefulSet", workload.name)
    return {t["metadata"]["name"] for t in statefulset["spec"].get("volumeClaimTemplates", [])}


def test_files_named_on_command_lines_are_mounted(manifests: Manifests) -> None:
    """`--config=/etc/otelcol/config.yaml`, `/etc/sensormesh/scripts/wait_for_schema.py`, ..."""
    for workload in manifests.workloads():
        volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
        for container in workload.containers():
            words = [w.split("=", 1)[-1] for w in container.get("command", []) + container.get("args", [])]
            for word in words:
                if not word.startswith("/etc/"):
                    continue
                mount = next(
                    (m for m in container.get("volumeMounts", []) if word.startswith(m["mountPath"])), None
                )
                assert mount is not None, f"{workload.name}/{container['name']}: {word} is not mounted"
                volume = volumes[mount["name"]]
                if "configMap" in volume and "subPath" not in mount:
                    key = word[len(mount["mountPath"]) :].lstrip("/")
                    assert key in manifests.config_map_data(volume["configMap"]["name"]), word


def test_secrets_referenced_are_the_documented_operator_secrets(manifests: Manifests) -> None:
    referenced = set()
    mounted = set()
    for workload in manifests.workloads():
        for container in workload.containers():
            referenced.update(_env_sources(container)[1])
        for volume in workload.pod.get("volumes", []):
            if "secret" in volume:
                mounted.add((workload.name, volume["secret"]["secretName"]))
    # Only the production overlay's TLS listener mounts one: its certificate.
    assert mounted == ({("envoy", TLS_SECRET)} if manifests.name.startswith("production") else set())
    documented = {(name, key) for name, keys in OPERATOR_SECRETS.items() for key in keys}
    assert referenced <= documented, referenced - documented
    assert referenced == documented, f"documented but unused: {documented - referenced}"


TLS_SECRET = "sensormesh-envoy-tls"


def test_the_tls_secret_is_documented_with_cert_manager_and_by_hand() -> None:
    (certificate,) = yaml.safe_load_all(
        (K8S / "overlays" / "production" / "certificate.example.yaml").read_text()
    )
    assert certificate["kind"] == "Certificate" and certificate["spec"]["secretName"] == TLS_SECRET
    assert f"create secret tls {TLS_SECRET}" in (ROOT / "README.md").read_text()


def test_the_secret_example_and_readme_document_every_operator_secret() -> None:
    example = {
        doc["metadata"]["name"]: set(doc["stringData"])
        for doc in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    }
    assert example == OPERATOR_SECRETS
    readme = (ROOT / "README.md").read_text()
    for name, keys in OPERATOR_SECRETS.items():
        assert f"create secret generic {name}" in readme
        for key in keys:
            assert f"--from-literal={key}=" in readme


def test_database_url_in_the_docs_names_the_role_service_and_database(rendered: dict[str, Manifests]) -> None:
    """The URL an operator is told to create must reach what the manifests deploy."""
    statefulset = rendered["small"].get("StatefulSet", "timescaledb")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    port = container_ports(statefulset["spec"]["template"]["spec"]["containers"][0])["postgres"]
    url = f"postgresql://{env['SENSORMESH_DB_USER']}:$APP_PASSWORD@{statefulset['spec']['serviceName']}:{port}/{env['POSTGRES_DB']}"
    assert url in (ROOT / "README.md").read_text()


def _known_settings() -> set[str]:
    """Every field of every settings class the services define (and the agreed ones)."""
    known = set(StorageSettings.model_fields) | AGREED_SETTINGS
    for name in SETTINGS_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, SensormeshSettings):
                known |= set(value.model_fields)
    return known


def test_sensormesh_settings_are_real_settings_and_parse(
    rendered: dict[str, Manifests], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt SENSORMESH_ variable would be ignored silently; a bad duration would crash the pods."""
    for name in ("small", "production"):
        manifests = rendered[name]
        data = manifests.config_map_data(manifests.generated("sensormesh-config"))
        known = _known_settings()
        for key, value in data.items():
            if key.startswith("SENSORMESH_"):
                assert key.removeprefix("SENSORMESH_").lower() in known, f"{key} is not a sensormesh setting"
                monkeypatch.setenv(key, value)
        settings = StorageSettings()
        assert settings.retention.days == 30
        assert settings.pool_max_size >= settings.pool_min_size


def test_services_send_telemetry_to_the_collector(manifests: Manifests) -> None:
    data = manifests.config_map_data(manifests.generated("sensormesh-config"))
    endpoint = re.fullmatch(r"http://([a-z-]+):(\d+)", data["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint, data["OTEL_EXPORTER_OTLP_ENDPOINT"]
    service = manifests.get("Service", endpoint[1])
    assert int(endpoint[2]) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "otlp-grpc"}
    assert data["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    for name in GRPC_SERVICES:
        container = manifests.workload(name).pod["containers"][0]
        assert manifests.generated("sensormesh-config") in _env_sources(container)[0]


def test_collector_pipelines_use_components_it_defines(manifests: Manifests) -> None:
    collector = manifests.workload("otel-collector")
    volume = next(v for v in collector.pod["volumes"] if "configMap" in v)
    config = yaml.safe_load(manifests.config_map_data(volume["configMap"]["name"])["config.yaml"])
    for pipeline in config["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], f"{manifests.name}: {component} not defined"
        assert pipeline["processors"][0] == "memory_limiter"
    ports = container_ports(collector.pod["containers"][0])
    for protocol, port_name in (("grpc", "otlp-grpc"), ("http", "otlp-http")):
        endpoint = config["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert endpoint.endswith(f":{ports[port_name]}")
    health = config["extensions"]["health_check"]["endpoint"]
    assert health.endswith(f":{collector.pod['containers'][0]['readinessProbe']['httpGet']['port']}")


def test_autoscalers_and_budgets_target_what_exists(manifests: Manifests) -> None:
    for hpa in manifests.kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = manifests.get(target["kind"], target["name"])
        assert "replicas" not in deployment["spec"], f"{target['name']}: the autoscaler owns replicas"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in container["resources"]["requests"], "CPU utilisation needs a CPU request"
    for pdb in manifests.kind("PodDisruptionBudget"):
        selected = manifests.pods_selected(pdb["spec"]["selector"])
        assert len(selected) == 1, f"{pdb['metadata']['name']} selects {[w.name for w in selected]}"


def test_the_services_and_envoy_autoscale_and_have_budgets(manifests: Manifests) -> None:
    for name in (*GRPC_SERVICES, "envoy"):
        assert manifests.get("HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]["name"] == name
        assert manifests.pods_selected(manifests.get("PodDisruptionBudget", name)["spec"]["selector"])


def test_every_sensormesh_container_runs_the_same_image_at_the_project_version(manifests: Manifests) -> None:
    images = set()
    for workload in manifests.workloads():
        for container in workload.containers():
            if "sensormesh" in container["image"] and "timescale" not in container["image"]:
                images.add(container["image"])
    assert images == {f"{SENSORMESH_IMAGE}:{_project_version()}"}


def test_images_are_pinned(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        for container in workload.containers():
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
            assert not image.endswith((":latest", "-latest")), f"{image} is not pinned"


def test_every_container_has_requests_and_a_memory_limit(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        for container in workload.containers():
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (
                f"{workload.name}/{container['name']}"
            )
            assert "memory" in resources.get("limits", {}), f"{workload.name}/{container['name']}"


def test_pods_meet_the_restricted_pod_security_standard(manifests: Manifests) -> None:
    """The namespace enforces `restricted`; a pod that breaks it would never be admitted."""
    namespace = manifests.get("Namespace", "sensormesh")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in manifests.workloads():
        pod_context = workload.pod.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload.name
        assert workload.pod.get("automountServiceAccountToken") is False, workload.name
        for container in workload.containers():
            context = container.get("securityContext", {})
            where = f"{workload.name}/{container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")) is True, where
            user = context.get("runAsUser", pod_context.get("runAsUser"))
            assert isinstance(user, int) and user > 0, f"{where} needs a numeric non-root uid"
        for volume in workload.pod.get("volumes", []):
            assert set(volume) - {"name"} <= {
                "configMap",
                "emptyDir",
                "secret",
                "persistentVolumeClaim",
                "projected",
                "downwardAPI",
            }


def test_dependent_variables_are_defined_before_use(manifests: Manifests) -> None:
    """`$(POD_NAME)` expands only if POD_NAME comes earlier in the same env list."""
    for workload in manifests.workloads():
        for container in workload.containers():
            defined: set[str] = set()
            for variable in container.get("env", []):
                for used in re.findall(r"\$\(([A-Z_]+)\)", variable.get("value", "")):
                    assert used in defined, (
                        f"{workload.name}: {variable['name']} uses {used} before it is set"
                    )
                defined.add(variable["name"])


def test_production_is_larger_and_stricter_than_small(rendered: dict[str, Manifests]) -> None:
    small, production = rendered["small"], rendered["production"]
    for name in GRPC_SERVICES:
        assert production.get("HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 2
        assert (
            production.get("HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
            > small.get("HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
        )
        spread = production.workload(name).pod["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert small.get("HorizontalPodAutoscaler", "envoy")["spec"]["minReplicas"] == 1
    assert production.get("HorizontalPodAutoscaler", "envoy")["spec"]["minReplicas"] >= 2
    assert production.has("PodDisruptionBudget", "timescaledb")
    assert production.get("Service", "envoy")["spec"]["type"] == "LoadBalancer"


def _pool_max_size(manifests: Manifests, name: str) -> int:
    """A service's SENSORMESH_POOL_MAX_SIZE: its container's own env over sensormesh-config."""
    container = manifests.workload(name).pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    config = manifests.config_map_data(manifests.generated("sensormesh-config"))
    return int(env.get("SENSORMESH_POOL_MAX_SIZE") or config["SENSORMESH_POOL_MAX_SIZE"])


def test_database_connections_fit_max_connections(rendered: dict[str, Manifests]) -> None:
    """Every pod at the autoscalers' maxima, each with a full pool, must fit the server."""
    for name in ("small", "production"):
        manifests = rendered[name]
        maxima = {
            s: manifests.get("HorizontalPodAutoscaler", s)["spec"]["maxReplicas"] for s in GRPC_SERVICES
        }
        pools = sum(pods * _pool_max_size(manifests, s) for s, pods in maxima.items())
        args = manifests.workload("timescaledb").pod["containers"][0].get("args", [])
        limit = next((int(a.split("=")[1]) for a in args if a.startswith("max_connections=")), 100)
        # Each ingest, query and control pod also holds one LISTEN connection of its own (the
        # command signal, live feeds, command watches); headroom for the migration Job, an
        # operator's psql and the superuser-reserved slots.
        listeners = sum(maxima.values())
        needed = pools + listeners + 10
        assert needed <= limit, f"{name}: {maxima} pools {pools} + {listeners} + 10 > {limit}"
