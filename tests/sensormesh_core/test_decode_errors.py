"""Request bytes protobuf refuses are explained by path: every string that is not UTF-8."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sensormesh.v1 import device_pb2, ingest_pb2, reading_pb2

from sensormesh_core.decode_errors import NOT_UTF8, explain

MARK = "QQQQ"


def _spoil(raw: bytes) -> bytes:
    return raw.replace(MARK.encode(), b"\xc3\x28" * 2)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.integers(0, 5), st.sampled_from(["sensor", "measurement.name", "measurement.unit"]))
def test_the_path_of_the_string_that_is_not_utf8(index: int, where: str) -> None:
    request = ingest_pb2.WriteReadingsRequest(device_id="pi", readings=[reading_pb2.Reading(sensor="ok")] * 6)
    reading = request.readings[index]
    if where == "sensor":
        reading.sensor = MARK
    else:
        setattr(reading.measurement, where.split(".")[1], MARK)

    error = explain(ingest_pb2.WriteReadingsRequest, _spoil(request.SerializeToString()))

    assert [(v.field, v.description) for v in error.violations] == [(f"readings[{index}].{where}", NOT_UTF8)]
    assert error.message == f"invalid WriteReadingsRequest: readings[{index}].{where}"


def test_map_keys_and_values() -> None:
    request = device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="pi", labels={"site": MARK}))
    assert [
        v.field
        for v in explain(device_pb2.CreateDeviceRequest, _spoil(request.SerializeToString())).violations
    ] == ['device.labels["site"]']
    request = device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="pi", labels={MARK: "x"}))
    (violation,) = explain(device_pb2.CreateDeviceRequest, _spoil(request.SerializeToString())).violations
    assert violation.field == "device.labels" and "key" in violation.description


def test_bytes_that_are_no_message_at_all() -> None:
    error = explain(ingest_pb2.UploadReadingsRequest, b"\x0a\xff\xff\xff\xff\xff")
    assert error.violations == []
    assert error.message.startswith("the request is not a valid sensormesh.v1.UploadReadingsRequest message")
