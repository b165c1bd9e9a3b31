"""Fixtures for the deployment tests: every kustomization rendered once per session."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import KUSTOMIZATIONS, Manifests, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, Manifests]:
    """base, small and production, each rendered by kustomize."""
    return {name: Manifests(name, render(path)) for name, path in KUSTOMIZATIONS.items()}


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def manifests(request: pytest.FixtureRequest, rendered: dict[str, Manifests]) -> Manifests:
    """Each rendered kustomization in turn."""
    return rendered[request.param]
