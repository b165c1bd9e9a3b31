"""The cluster's Envoy config: the real Envoy accepts it, and every name in it
(descriptor path, services, clusters, ports, health) matches the manifests."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from sensormesh_cli.stack.envoy_proxy import envoy_binary
from tests.k8s.manifests import K8S, ROOT, Manifests, container_ports

CONFIG = K8S / "base" / "config" / "envoy.yaml"
PRODUCTION = K8S / "overlays" / "production" / "config"
PRODUCTION_CONFIG = PRODUCTION / "envoy.yaml"
SSO = K8S / "components" / "sso" / "config"
SSO_CONFIG = SSO / "envoy.yaml"
# Each kustomization's Envoy config: the production overlay has its own, with the TLS listener;
# the single sign-on component's adds the jwt_authn filter to that.
CONFIGS = {"base": CONFIG, "small": CONFIG, "production": PRODUCTION_CONFIG, "production-sso": SSO_CONFIG}
DESCRIPTOR = ROOT / "gen" / "sensormesh" / "descriptor_set.binpb"
# Which pods serve which gRPC service (the query service hosts the device registry; the
# devices' command channel is on ingest, the operators' commands on control).
SERVING_COMPONENT = {
    "sensormesh.v1.IngestService": "ingest",
    "sensormesh.v1.CommandDeliveryService": "ingest",
    "sensormesh.v1.DeviceService": "query",
    "sensormesh.v1.QueryService": "query",
    "sensormesh.v1.FrameService": "query",
    "sensormesh.v1.AccessService": "query",
    "sensormesh.v1.AuditService": "query",
    "sensormesh.v1.CommandService": "control",
    "sensormesh.v1.AlertService": "control",
}


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return dict(hcm["typed_config"])


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in connection_manager(config)["http_filters"] if f["name"] == name)


def transcoder_descriptor_path(config: dict[str, Any]) -> str:
    return str(http_filter(config, "envoy.filters.http.grpc_json_transcoder")["proto_descriptor"])


def config_for_this_machine(tmp_path: Path) -> Path:
    """The config with the descriptor read from gen/ instead of the pod's emptyDir."""
    text = CONFIG.read_text().replace(transcoder_descriptor_path(load_config()), str(DESCRIPTOR))
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    return path


def test_envoy_accepts_the_cluster_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            envoy_binary(),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-c",
            str(config_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output
    # A deprecated field works today and is removed in a later Envoy.
    assert "Deprecated field" not in output, output


def test_envoy_validation_rejects_a_broken_config(tmp_path: Path) -> None:
    """Proves the validation above runs the transcoder: an unknown service fails it."""
    path = config_for_this_machine(tmp_path)
    path.write_text(path.read_text().replace("- sensormesh.v1.QueryService", "- sensormesh.v1.QueryServise"))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "QueryServise" in result.stdout + result.stderr


def test_the_cluster_config_is_rendered_from_the_local_one(tmp_path: Path) -> None:
    """envoy/envoy.yaml is the one source of the shape; these files are its cluster renderings."""
    out = tmp_path / "envoy.yaml"
    command = [sys.executable, str(ROOT / "tools" / "k8s_envoy.py"), "--out", str(out)]
    command += ["--production-dir", str(tmp_path / "production"), "--sso-dir", str(tmp_path / "sso")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == CONFIG.read_text(), "k8s/base/config/envoy.yaml is stale; run `make k8s-envoy`"
    for name in ("envoy.yaml", "listener-tls.yaml"):
        assert (tmp_path / "production" / name).read_text() == (PRODUCTION / name).read_text(), (
            f"k8s/overlays/production/config/{name} is stale; run `make k8s-envoy`"
        )
        assert (tmp_path / "sso" / name).read_text() == (SSO / name).read_text(), (
            f"k8s/components/sso/config/{name} is stale; run `make k8s-envoy`"
        )


def test_the_production_config_is_the_cluster_one_with_a_tls_listener() -> None:
    base, production = load_config(), load_config(PRODUCTION_CONFIG)
    (base_listener,) = base["static_resources"]["listeners"]
    (listener,) = production["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    tls = chain.pop("transport_socket")["typed_config"]
    assert tls["@type"].endswith("DownstreamTlsContext")
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
    (sds,) = tls["common_tls_context"]["tls_certificate_sds_secret_configs"]
    assert sds["sds_config"]["path_config_source"]["path"] == "/etc/envoy/listener-tls.yaml"
    (secret,) = yaml.safe_load((PRODUCTION / "listener-tls.yaml").read_text())["resources"]
    assert secret["tls_certificate"]["certificate_chain"] == {"filename": "/etc/envoy/tls/tls.crt"}
    assert secret["tls_certificate"]["private_key"] == {"filename": "/etc/envoy/tls/tls.key"}
    assert secret["tls_certificate"]["watched_directory"] == {"path": "/etc/envoy/tls"}
    assert listener["address"]["socket_address"]["port_value"] == 8443
    listener["address"] = base_listener["address"]
    assert production == base, "only the listener's port and TLS differ"


def test_the_production_tls_config_is_accepted_by_envoy(tmp_path: Path) -> None:
    """Validated with a certificate of a local CA where the Secret would be mounted."""
    from sensormesh_cli.stack.local_ca import ensure_local_tls

    tls = ensure_local_tls(tmp_path)
    secret = (PRODUCTION / "listener-tls.yaml").read_text()
    secret = secret.replace("/etc/envoy/tls/tls.crt", str(tls.server_cert)).replace(
        "/etc/envoy/tls/tls.key", str(tls.server_key)
    )
    (tmp_path / "listener-tls.yaml").write_text(secret.replace("/etc/envoy/tls", str(tls.folder)))
    config = PRODUCTION_CONFIG.read_text().replace(transcoder_descriptor_path(load_config()), str(DESCRIPTOR))
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


def test_the_production_load_balancer_exposes_only_tls(rendered: dict[str, Manifests]) -> None:
    production = rendered["production"]
    service = production.get("Service", "envoy")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    pod = production.workload("envoy").pod
    container = pod["containers"][0]
    assert container_ports(container) == {"https": 8443}
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/envoy/tls")
    assert "subPath" not in mount, "a subPath mount would never see the renewed certificate"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "sensormesh-envoy-tls"
    assert "optional" not in volume["secret"], "production requires the certificate"
    sds = next(m for m in container["volumeMounts"] if m.get("subPath") == "listener-tls.yaml")
    assert sds["mountPath"] == "/etc/envoy/listener-tls.yaml"


def test_reflection_is_not_routed_on_the_public_listener() -> None:
    for path in (CONFIG, PRODUCTION_CONFIG, ROOT / "envoy" / "envoy.yaml"):
        (host,) = connection_manager(load_config(path))["route_config"]["virtual_hosts"]
        # The web console's page, assets and configuration go to its static file server.
        api = [r for r in host["routes"] if r["route"]["cluster"] != "console"]
        prefixes = [r["match"].get("prefix", r["match"].get("path", "")) for r in api]
        assert all(p.startswith("/sensormesh.v1.") for p in prefixes), (path, prefixes)
        console = [r["match"].get("prefix", r["match"].get("path")) for r in host["routes"] if r not in api]
        assert set(console) <= {"/", "/assets/", "/console-config.json"}, (path, console)


def test_the_cluster_keeps_the_local_routes_and_filters() -> None:
    """What the local stack is tested with (transcoder options, route timeouts) holds in the cluster."""
    local = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    cluster = load_config()
    local_manager, cluster_manager = connection_manager(local), connection_manager(cluster)
    local_routes = local_manager["route_config"]["virtual_hosts"][0]["routes"]
    assert cluster_manager["route_config"]["virtual_hosts"][0]["routes"][: len(local_routes)] == local_routes
    local_filters = [f["name"] for f in local_manager["http_filters"]]
    assert [f["name"] for f in cluster_manager["http_filters"]] == [
        "envoy.filters.http.health_check",
        *local_filters,
    ]
    for name in local_filters:
        if name != "envoy.filters.http.grpc_json_transcoder":
            assert http_filter(cluster, name) == http_filter(local, name)
    local_transcoder = dict(http_filter(local, "envoy.filters.http.grpc_json_transcoder"))
    cluster_transcoder = dict(http_filter(cluster, "envoy.filters.http.grpc_json_transcoder"))
    assert cluster_transcoder.pop("proto_descriptor") == "/etc/envoy/descriptors/descriptor_set.binpb"
    local_transcoder.pop("proto_descriptor")
    assert cluster_transcoder == local_transcoder


def test_the_config_map_carries_this_file(rendered: dict[str, Manifests]) -> None:
    for name, manifests in rendered.items():
        data = manifests.config_map_data(manifests.generated("envoy-config"))
        assert yaml.safe_load(data["envoy.yaml"]) == load_config(CONFIGS[name])
    production = rendered["production"].config_map_data(rendered["production"].generated("envoy-config"))
    assert production["listener-tls.yaml"] == (PRODUCTION / "listener-tls.yaml").read_text()


def test_the_descriptor_is_where_the_init_container_puts_it(manifests: Manifests) -> None:
    pod = manifests.workload("envoy").pod
    (init,) = pod["initContainers"]
    envoy_container = pod["containers"][0]
    path = Path(transcoder_descriptor_path(load_config()))
    init_mount = next(m for m in init["volumeMounts"] if str(path).startswith(m["mountPath"]))
    envoy_mount = next(m for m in envoy_container["volumeMounts"] if m["name"] == init_mount["name"])
    assert str(path.parent) == envoy_mount["mountPath"] == init_mount["mountPath"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == init_mount["name"])
    assert str(path) in " ".join(init["command"])
    config_mount = next(m for m in envoy_container["volumeMounts"] if m.get("subPath") == "envoy.yaml")
    assert config_mount["mountPath"] in envoy_container["args"]


def test_the_init_container_copies_the_installed_descriptor(
    rendered: dict[str, Manifests], tmp_path: Path
) -> None:
    """Runs the init container's own command (against this checkout's install)."""
    (init,) = rendered["production"].workload("envoy").pod["initContainers"]
    command = [sys.executable if word == "python" else word for word in init["command"]]
    target = transcoder_descriptor_path(load_config())
    command = [word.replace(target, str(tmp_path / "descriptor_set.binpb")) for word in command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
    assert (tmp_path / "descriptor_set.binpb").read_bytes() == DESCRIPTOR.read_bytes()


def _descriptor_services() -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    found = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes()).file:
        for service in file.service:
            found[f"{file.package}.{service.name}"] = service
    return found


def _routes() -> list[dict[str, Any]]:
    (host,) = connection_manager(load_config())["route_config"]["virtual_hosts"]
    return list(host["routes"])


def _route_for(path: str) -> dict[str, Any]:
    """The first route Envoy would pick for a gRPC path (Envoy matches in order)."""
    for route in _routes():
        match = route["match"]
        if match.get("path") == path or ("prefix" in match and path.startswith(match["prefix"])):
            return route
    raise AssertionError(f"no route for {path}")


def test_the_transcoder_serves_every_sensormesh_service_with_a_rest_mapping() -> None:
    """Every service is served by some pods; the transcoder knows each one a REST client may
    call (CommandDeliveryService, a device's bidirectional stream, has no REST mapping)."""
    transcoder = http_filter(load_config(), "envoy.filters.http.grpc_json_transcoder")
    services = {name: s for name, s in _descriptor_services().items() if name.startswith("sensormesh.")}
    assert set(services) == set(SERVING_COMPONENT)
    with_rest = {
        name
        for name, service in services.items()
        if any(method.options.HasExtension(annotations_pb2.http) for method in service.method)
    }
    assert "sensormesh.v1.CommandService" in with_rest
    assert set(transcoder["services"]) == with_rest


def test_every_method_routes_to_the_pods_that_serve_it(manifests: Manifests) -> None:
    clusters = {c["name"]: c for c in load_config()["static_resources"]["clusters"]}
    for service_name, service in _descriptor_services().items():
        if service_name not in SERVING_COMPONENT:
            continue
        for method in service.method:
            route = _route_for(f"/{service_name}/{method.name}")["route"]
            cluster = clusters[route["cluster"]]
            (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            address = endpoint["endpoint"]["address"]["socket_address"]
            k8s_service = manifests.get("Service", address["address"])
            assert k8s_service["spec"].get("clusterIP") == "None", (
                "per-request balancing needs a headless Service"
            )
            assert address["port_value"] in {p["port"] for p in k8s_service["spec"]["ports"]}
            (workload,) = manifests.pods_selected({"matchLabels": k8s_service["spec"]["selector"]})
            assert workload.name == SERVING_COMPONENT[service_name], f"{service_name}/{method.name}"
            assert address["port_value"] in container_ports(workload.pod["containers"][0]).values()


def test_streams_have_no_deadline_but_an_idle_timeout() -> None:
    for service_name, service in _descriptor_services().items():
        for method in service.method:
            route = _route_for(f"/{service_name}/{method.name}")
            streaming = method.client_streaming or method.server_streaming
            if streaming:
                assert route["match"].get("path") == f"/{service_name}/{method.name}"
                assert route["route"]["timeout"] == "0s"
                assert route["route"]["idle_timeout"]
            elif service_name in SERVING_COMPONENT:
                assert route["route"]["timeout"] != "0s", f"{method.name} is unary and needs a deadline"


def test_clusters_balance_per_request_over_dns_and_health(manifests: Manifests) -> None:
    for cluster in load_config()["static_resources"]["clusters"]:
        assert cluster["type"] == "STRICT_DNS", "every address of the headless Service is an endpoint"
        assert cluster["lb_policy"] == "LEAST_REQUEST"
        (check,) = cluster["health_checks"]
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        k8s_service = manifests.get("Service", endpoint["endpoint"]["address"]["socket_address"]["address"])
        assert k8s_service["spec"].get("clusterIP") == "None", (
            "per-request balancing needs a headless Service"
        )
        (workload,) = manifests.pods_selected({"matchLabels": k8s_service["spec"]["selector"]})
        probe = workload.pod["containers"][0]["readinessProbe"]
        if cluster["name"] == "console":  # plain HTTP: the page the readiness probe asks for
            assert check["http_health_check"]["path"] == probe["httpGet"]["path"]
        else:
            assert check["grpc_health_check"]["service_name"] == probe["grpc"]["service"]
        assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] >= 10000


def test_listener_health_and_admin_match_the_pod(manifests: Manifests) -> None:
    config = load_config(CONFIGS[manifests.name])
    (listener,) = config["static_resources"]["listeners"]
    container = manifests.workload("envoy").pod["containers"][0]
    port_name = "https" if manifests.name.startswith("production") else "http"
    assert listener["address"]["socket_address"]["port_value"] == container_ports(container)[port_name]
    service = manifests.get("Service", "envoy")
    assert service["spec"]["ports"][0]["targetPort"] == port_name
    health = http_filter(config, "envoy.filters.http.health_check")
    assert health["headers"][0]["string_match"]["exact"] == container["readinessProbe"]["httpGet"]["path"]
    admin = config["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 9901}
