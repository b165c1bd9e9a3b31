"""Only what is needed flows: the NetworkPolicies, evaluated as the API defines them.

The evaluator below follows the NetworkPolicy semantics (a pod selected by a
policy of a type is isolated for that direction; a connection needs the
sender's egress and the receiver's ingress to allow it; peers, named ports,
namespace selectors) and is applied to every pair of pods the manifests run,
on every port they listen on. The result must be exactly the matrix the
design needs, in both directions: nothing missing, nothing extra.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.k8s.manifests import Doc, Manifests, container_ports, selector_matches

NAMESPACE = "sensormesh"


@dataclass(frozen=True)
class Endpoint:
    """A pod (in or outside the namespace) or an address outside the cluster."""

    name: str
    namespace: str | None  # None: outside the cluster
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: dict[str, int] = field(default_factory=dict, hash=False)
    ip: str = "10.0.0.1"

    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


INTERNET = Endpoint("internet", None, ip="203.0.113.7", ports={"https": 443, "otlp": 4317})
KUBE_DNS = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
OBSERVABILITY = Endpoint("backend", "observability", {"app": "tempo"}, {"otlp-grpc": 4317, "otlp-http": 4318})

# Every flow the design needs inside the namespace (README, "Deploying to Kubernetes").
NEEDED = {
    ("envoy", "ingest", 50051),
    ("envoy", "query", 50052),
    ("envoy", "control", 50053),
    ("envoy", "console", 50054),
    ("ingest", "timescaledb", 5432),
    ("query", "timescaledb", 5432),
    ("control", "timescaledb", 5432),
    ("migrate", "timescaledb", 5432),
    ("ingest", "otel-collector", 4317),
    ("ingest", "otel-collector", 4318),
    ("query", "otel-collector", 4317),
    ("query", "otel-collector", 4318),
    ("control", "otel-collector", 4317),
    ("control", "otel-collector", 4318),
}


def _pods(manifests: Manifests) -> list[Endpoint]:
    pods = []
    for workload in manifests.workloads():
        ports: dict[str, int] = {}
        for container in workload.containers(init=False):
            ports.update(container_ports(container))
        pods.append(Endpoint(workload.name, NAMESPACE, workload.labels, ports))
    return pods


def _peer_matches(peer: Doc, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.namespace is not None:
            return False  # pod addresses are not what ipBlock rules are written for
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(c) for c in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels()):
            return False
    elif other.namespace != NAMESPACE:
        return False
    return selector_matches(peer.get("podSelector", {}), other.labels)


def _port_matches(rule_ports: list[Doc] | None, target: Endpoint, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != protocol:
            continue
        wanted = rule_port.get("port")
        if wanted is None or wanted == port or target.ports.get(str(wanted)) == port:
            return True
    return False


def _allowed(
    policies: list[Doc],
    pod: Endpoint,
    other: Endpoint,
    target: Endpoint,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    """Whether `pod`'s policies let it talk with `other` (direction: Ingress or Egress)."""
    if pod.namespace != NAMESPACE:
        return True  # policies outside the namespace are not ours
    selecting = [
        p
        for p in policies
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(peer, other) for peer in peers)) and _port_matches(
                rule.get("ports"), target, port, protocol
            ):
                return True
    return False


def flows(manifests: Manifests, source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
    policies = manifests.kind("NetworkPolicy")
    return _allowed(policies, source, target, target, port, protocol, "Egress") and _allowed(
        policies, target, source, target, port, protocol, "Ingress"
    )


def test_exactly_the_needed_flows_between_pods(manifests: Manifests) -> None:
    pods = _pods(manifests)
    allowed = {
        (source.name, target.name, port)
        for source in pods
        for target in pods
        for port in set(target.ports.values())
        if source != target and flows(manifests, source, target, port)
    }
    assert allowed == NEEDED, f"missing: {NEEDED - allowed}, extra: {allowed - NEEDED}"


def test_only_envoy_is_reachable_from_outside(manifests: Manifests) -> None:
    reachable = {
        (target.name, port)
        for target in _pods(manifests)
        for port in set(target.ports.values())
        if flows(manifests, INTERNET, target, port)
    }
    (service_port,) = manifests.get("Service", "envoy")["spec"]["ports"]
    (envoy,) = [p for p in _pods(manifests) if p.name == "envoy"]
    target = service_port["targetPort"]
    assert reachable == {("envoy", envoy.ports[target] if isinstance(target, str) else target)}


@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_every_pod_resolves_names(manifests: Manifests, protocol: str) -> None:
    for pod in _pods(manifests):
        assert flows(manifests, pod, KUBE_DNS, 53, protocol), pod.name


def test_nothing_but_the_collector_leaves_the_cluster(rendered: dict[str, Manifests]) -> None:
    for name in ("base", "small", "production"):
        manifests = rendered[name]
        leaving = {
            pod.name
            for pod in _pods(manifests)
            for port in INTERNET.ports.values()
            if flows(manifests, pod, INTERNET, port)
        }
        assert leaving <= {"otel-collector"}, f"{name}: {leaving}"


def test_production_collector_exports_only_to_the_observability_namespace(
    rendered: dict[str, Manifests],
) -> None:
    production, small = rendered["production"], rendered["small"]
    collector = next(p for p in _pods(production) if p.name == "otel-collector")
    assert not flows(production, collector, INTERNET, 443)
    assert flows(small, collector, INTERNET, 443)
    for port in OBSERVABILITY.ports.values():
        assert flows(production, collector, OBSERVABILITY, port)
    ingest = next(p for p in _pods(production) if p.name == "ingest")
    assert not flows(production, ingest, OBSERVABILITY, 4317)


def test_the_evaluator_denies_when_a_selector_names_no_pod(rendered: dict[str, Manifests]) -> None:
    """Proves the matrix test can fail: a misspelt label in a policy drops a flow."""
    manifests = rendered["small"]
    broken = [dict(doc) for doc in manifests.docs]
    for doc in broken:
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "ingest":
            doc["spec"] = {
                **doc["spec"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "envoi"}}}]}
                ],
            }
    envoy, ingest = (next(p for p in _pods(manifests) if p.name == n) for n in ("envoy", "ingest"))
    assert flows(manifests, envoy, ingest, 50051)
    assert not flows(Manifests("broken", broken), envoy, ingest, 50051)
