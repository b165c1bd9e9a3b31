"""The contracts: gen/ is fresh, buf lint is clean, Envoy's descriptor set has
what the transcoder needs, and the proto's validation rules are enforced."""

from __future__ import annotations

import filecmp
import math
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from sensormesh.v1 import device_pb2, frame_pb2, ingest_pb2, query_pb2, reading_pb2

from sensormesh_core import validation

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen"
DESCRIPTOR_SET = GEN / "sensormesh" / "descriptor_set.binpb"
NODE_GEN = ROOT / "examples" / "node-client" / "gen"
CONSOLE_GEN = ROOT / "console" / "src" / "gen"
SERVICES = (
    "sensormesh.v1.IngestService",
    "sensormesh.v1.DeviceService",
    "sensormesh.v1.QueryService",
    "sensormesh.v1.FrameService",
)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise AssertionError(f"{name} is not installed in the virtual environment; run `make setup`")
    return str(path)


def _differences(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in gen/: {n}" for n in cmp.left_only] + [
        f"missing from gen/: {n}" for n in cmp.right_only
    ]
    found += [f"differs: {n}" for n in cmp.diff_files]
    _, mismatch, errors = filecmp.cmpfiles(left, right, cmp.common_files, shallow=False)
    found += [f"differs: {n}" for n in mismatch + errors if f"differs: {n}" not in found]
    for sub in cmp.common_dirs:
        found += [f"{sub}/{d}" for d in _differences(left / sub, right / sub)]
    return found


def test_gen_is_fresh(tmp_path: Path) -> None:
    """gen/, the Node.js example's gen/ and the console's src/gen/ are exactly what `make proto`
    writes from proto/ now."""
    out, node_out, console_out = tmp_path / "gen", tmp_path / "node-gen", tmp_path / "console-gen"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "protogen.py"),
            *("--out", str(out), "--node-out", str(node_out), "--console-out", str(console_out)),
        ],
        check=True,
        capture_output=True,
    )
    differences = (
        _differences(GEN, out)
        + [f"examples/node-client/gen/: {d}" for d in _differences(NODE_GEN, node_out)]
        + [f"console/src/gen/: {d}" for d in _differences(CONSOLE_GEN, console_out)]
    )
    assert not differences, "gen/ is stale; run `make proto`:\n" + "\n".join(differences)


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [_tool("buf"), "lint", str(DESCRIPTOR_SET), "--path", "sensormesh/v1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_catches_an_undocumented_field(tmp_path: Path) -> None:
    """Proves the lint above really runs the COMMENTS rules over our files."""
    proto_dir = tmp_path / "proto" / "sensormesh" / "v1"
    proto_dir.mkdir(parents=True)
    (proto_dir / "probe.proto").write_text(
        'syntax = "proto3";\n\npackage sensormesh.v1;\n\n// A probe.\nmessage Probe {\n  string name = 1;\n}\n'
    )
    image = tmp_path / "probe.binpb"
    from grpc_tools import protoc

    assert (
        protoc.main(
            [
                "protoc",
                f"-I{tmp_path / 'proto'}",
                "--include_source_info",
                f"--descriptor_set_out={image}",
                "sensormesh/v1/probe.proto",
            ]
        )
        == 0
    )
    result = subprocess.run(
        [_tool("buf"), "lint", str(image), "--path", "sensormesh/v1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert 'Field "name" should have a non-empty comment' in result.stdout


def _descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


def test_descriptor_set_is_self_contained_for_envoy() -> None:
    files = {f.name: f for f in _descriptor_set().file}
    assert {"google/api/annotations.proto", "google/api/http.proto", "buf/validate/validate.proto"} <= set(
        files
    )
    services = {f"{f.package}.{s.name}" for f in files.values() for s in f.service}
    assert set(SERVICES) <= services
    assert any(f.source_code_info.location for f in files.values() if f.name.startswith("sensormesh/"))


def test_every_rpc_but_the_client_streams_has_a_rest_mapping() -> None:
    """REST through Envoy carries unary calls and server streams; a client stream (the readings
    and frames uploads, the devices' command channel) is gRPC only."""
    missing, streams = [], []
    for file in _descriptor_set().file:
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                has_rule = any(getattr(rule, kind) for kind in ("get", "post", "patch", "delete", "put"))
                if method.client_streaming:
                    streams.append(f"{service.name}.{method.name}")
                elif not has_rule:
                    missing.append(f"{service.name}.{method.name}")
    assert missing == []
    assert sorted(streams) == [
        "CommandDeliveryService.ConnectCommands",
        "IngestService.UploadFrames",
        "IngestService.UploadReadings",
    ]


def test_get_frame_answers_rest_with_the_image_itself() -> None:
    """GetFrame's REST rules send its HttpBody field as the response body (the image with its
    content type), on both paths: by number and the newest."""
    method = frame_pb2.DESCRIPTOR.services_by_name["FrameService"].methods_by_name["GetFrame"]
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    bindings = [rule, *rule.additional_bindings]
    assert [b.get for b in bindings] == [
        "/v1/devices/{device_id}/frames/{sequence}",
        "/v1/devices/{device_id}/frames:latest",
    ]
    assert {b.response_body for b in bindings} == {"image"}
    image_field = frame_pb2.GetFrameResponse.DESCRIPTOR.fields_by_name["image"]
    assert image_field.message_type.full_name == "google.api.HttpBody"


def _reading(**payload: object) -> reading_pb2.Reading:
    reading = reading_pb2.Reading(sensor="mpu6050-0x68", **payload)  # type: ignore[arg-type]
    reading.sample_time.FromSeconds(1_790_000_000)
    return reading


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (_reading(imu=reading_pb2.ImuPayload(acceleration_x_mps2=math.nan)), "imu.acceleration_x_mps2"),
        (_reading(imu=reading_pb2.ImuPayload(angular_rate_y_dps=math.inf)), "imu.angular_rate_y_dps"),
        (
            _reading(environment=reading_pb2.EnvironmentPayload(relative_humidity_percent=101)),
            "environment.relative_humidity_percent",
        ),
        (_reading(system=reading_pb2.SystemPayload()), "system"),
        (_reading(link_health=reading_pb2.LinkHealthPayload()), "link_health"),
        (
            _reading(link_health=reading_pb2.LinkHealthPayload(battery_level_percent=101)),
            "link_health.battery_level_percent",
        ),
        (
            _reading(link_health=reading_pb2.LinkHealthPayload(signal_strength_dbm=127)),
            "link_health.signal_strength_dbm",
        ),
        (_reading(measurement=reading_pb2.Measurement(name="battery_level", value=1)), "measurement.name"),
        (_reading(measurement=reading_pb2.Measurement(name="temperature", value=1)), "measurement.name"),
        (_reading(measurement=reading_pb2.Measurement(name="Soil Moisture", value=1)), "measurement.name"),
        (reading_pb2.Reading(sensor="x", imu=reading_pb2.ImuPayload()), "sample_time"),
        (_reading(), "payload"),
        (
            ingest_pb2.UploadReadingsRequest(device_id="pi-1", first_sequence=9, last_sequence=3),
            "last_sequence",
        ),
        (ingest_pb2.GetUploadOffsetRequest(device_id="Pi_1"), "device_id"),
        (device_pb2.Device(device_id="-pi"), "device_id"),
        (device_pb2.ListDevicesRequest(page_size=5000), "page_size"),
        (device_pb2.ListDevicesRequest(order_by="battery"), "order_by"),
        (query_pb2.ListReadingsRequest(device_id="pi-1", page_size=-1), "page_size"),
        (
            frame_pb2.Frame(camera="cam", sequence=1, content_type="text/html", width=1, height=1),
            "content_type",
        ),
        (frame_pb2.Frame(camera="cam", content_type="image/jpeg", width=1, height=1, data=b"x"), "sequence"),
        (frame_pb2.Frame(camera="-cam", sequence=1, content_type="image/png", width=1, height=1), "camera"),
        (
            frame_pb2.Frame(sequence=1, content_type="image/png", width=1, height=1, data=b"x" * 4194305),
            "data",
        ),
        (frame_pb2.Frame(sequence=1, content_type="image/png", width=16385, height=1), "width"),
        (frame_pb2.ListFramesRequest(device_id="pi-1", page_size=1001), "page_size"),
        (frame_pb2.GetFrameRequest(device_id="pi-1", camera="a b"), "camera"),
        (
            ingest_pb2.UploadFramesRequest(device_id="pi-1", first_sequence=9, last_sequence=3),
            "last_sequence",
        ),
    ],
)
def test_validation_rules_name_the_field(message: object, field: str) -> None:
    fields = [v.field for v in validation.violations(message)]  # type: ignore[arg-type]
    assert field in fields


def test_a_valid_reading_has_no_violations() -> None:
    reading = _reading(
        environment=reading_pb2.EnvironmentPayload(temperature_celsius=21.5, pressure_hpa=1013.25)
    )
    assert validation.violations(reading) == []
    link = _reading(
        link_health=reading_pb2.LinkHealthPayload(battery_level_percent=0, signal_strength_dbm=-127)
    )
    assert validation.violations(link) == []
