"""The vendored third-party protos: the same as the pinned Python packages carry, and enough for
buf to build proto/ from the repository alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import google.api.annotations_pb2 as annotations
import protovalidate
import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY = ROOT / "third_party" / "proto"
GOOGLEAPIS_INSTALLED = Path(annotations.__file__).resolve().parent.parent
GOOGLE_FILES = sorted(
    p.relative_to(THIRD_PARTY / "google") for p in (THIRD_PARTY / "google").rglob("*.proto")
)
# File options protovalidate's own generation rewrites (buf managed mode); not rules.
MANAGED_OPTIONS = ("java_package", "objc_class_prefix", "csharp_namespace", "php_namespace",
                   "php_metadata_namespace", "ruby_package")  # fmt: skip


def _buf() -> str:
    path = Path(sys.executable).parent / "buf"
    assert path.exists(), "buf is not installed in the virtual environment; run `make setup`"
    return str(path)


def test_every_import_of_proto_is_vendored_or_well_known() -> None:
    imports = {
        line.split('"')[1]
        for proto in (ROOT / "proto").rglob("*.proto")
        for line in proto.read_text().splitlines()
        if line.startswith("import ")
    }
    for name in imports:
        assert name.startswith(("sensormesh/", "google/protobuf/")) or (THIRD_PARTY / name).is_file(), (
            f"{name} is imported by proto/ but not vendored in third_party/proto"
        )


@pytest.mark.parametrize("relative", GOOGLE_FILES, ids=str)
def test_googleapis_copies_equal_the_pinned_package(relative: Path) -> None:
    installed = GOOGLEAPIS_INSTALLED / relative
    assert (THIRD_PARTY / "google" / relative).read_bytes() == installed.read_bytes(), (
        f"third_party/proto/google/{relative} differs from googleapis-common-protos' copy; see third_party/README.md"
    )


def test_validate_proto_defines_the_rules_the_validator_enforces(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "validate.binpb"
    wkt = resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{THIRD_PARTY}",
            f"-I{wkt}",
            f"--descriptor_set_out={out}",
            "buf/validate/validate.proto",
        ]
    )
    assert code == 0
    vendored = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    enforced = descriptor_pb2.FileDescriptorProto.FromString(
        protovalidate.ViolationPb.desc().file.proto.to_binary()
    )
    for descriptor in (vendored, enforced):
        for option in MANAGED_OPTIONS:
            descriptor.options.ClearField(option)
    assert vendored == enforced, (
        "third_party/proto/buf/validate/validate.proto is not protovalidate's version"
    )


def test_buf_builds_proto_from_the_repository_alone(tmp_path: Path) -> None:
    """What a fresh clone holds, with no Python on PATH and an empty home (no buf cache)."""
    for name in ("proto", "third_party"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "BUF_CACHE_DIR": str(home / "cache")}
    for target in (["proto"], []):
        result = subprocess.run(
            [_buf(), "build", *target, "-o", str(tmp_path / "image.binpb")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        image = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "image.binpb").read_bytes())
        names = {f.name for f in image.file}
        assert {"sensormesh/v1/ingest.proto", "buf/validate/validate.proto", "google/api/http.proto"} <= names
