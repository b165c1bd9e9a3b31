"""Query requests at the edges, over gRPC: times a Timestamp cannot hold,
durations out of range, page tokens that were never issued (garbage, forged
with a valid fingerprint, taken from another query), and filters far beyond
their limits. Each is INVALID_ARGUMENT naming the field, never INTERNAL.
Every query carries the stack's admin key."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf.message import Message
from grpc import StatusCode
from sensormesh.v1 import device_pb2, ingest_pb2, query_pb2

from query_service.history_pages import _token_parameters
from sensormesh_core.page_tokens import encode
from tests.bad_input.messages import DEVICES, QUERY, WRITE, imu_reading
from tests.bad_input.stack import Device, Outcome, Stack, first_of_stream, unary

pytestmark = pytest.mark.storage

YEAR_1 = -62_135_596_800
YEAR_9999_END = 253_402_300_799
MALFORMED_TIMES = {
    "after year 9999": (2**62, 0),
    "before year 1": (YEAR_1 - 1, 0),
    "nanos of a whole second": (0, 1_000_000_000),
    "negative nanos": (0, -5),
}


def _list(stack: Stack, request: Message) -> Outcome:
    return unary(
        stack.envoy_target, QUERY + "ListReadings", request.SerializeToString(), stack.admin_metadata
    )


def _watch(stack: Stack, request: Message) -> Outcome:
    return first_of_stream(
        stack.envoy_target, QUERY + "WatchReadings", request.SerializeToString(), stack.admin_metadata
    )


def _refused(outcome: Outcome, field: str) -> None:
    assert outcome.code is StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.violations is not None and field in outcome.violations, outcome


@pytest.mark.parametrize("case", MALFORMED_TIMES, ids=list(MALFORMED_TIMES))
def test_times_a_timestamp_cannot_hold_are_invalid_argument(case: str, stack: Stack, device: Device) -> None:
    seconds, nanos = MALFORMED_TIMES[case]
    stamp = {"seconds": seconds, "nanos": nanos}
    _refused(
        _list(stack, query_pb2.ListReadingsRequest(device_id=device.device_id, start_time=stamp)),
        "start_time",
    )
    _refused(
        _list(stack, query_pb2.ListReadingsRequest(device_id=device.device_id, end_time=stamp)), "end_time"
    )
    watch = query_pb2.WatchReadingsRequest(device_id=device.device_id, start_time=stamp)
    _refused(_watch(stack, watch), "start_time")


@pytest.mark.parametrize(
    "stamps",
    [
        {"end_time": {"seconds": YEAR_9999_END}},
        {"end_time": {"seconds": YEAR_1 + 60}},  # the default start (an hour before) would precede year 1
        {"start_time": {"seconds": YEAR_1}, "end_time": {"seconds": YEAR_9999_END, "nanos": 999_999_999}},
        {"start_time": {"seconds": YEAR_9999_END - 3600}},
        {"start_time": {"seconds": YEAR_1}},
    ],
    ids=["end in year 9999", "end in year 1", "the whole range", "start in year 9999", "start in year 1"],
)
def test_ranges_reaching_the_ends_of_time_are_answered(
    stamps: dict[str, object], stack: Stack, device: Device
) -> None:
    write = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=[imu_reading()])
    assert unary(stack.envoy_target, WRITE, write.SerializeToString(), device.metadata).code is StatusCode.OK
    for interval in (None, {"seconds": 2_678_400}, {"seconds": 1}):
        request = query_pb2.ListReadingsRequest(device_id=device.device_id, **stamps)  # type: ignore[arg-type]
        if interval:
            request.interval.seconds = interval["seconds"]
        outcome = _list(stack, request)
        assert outcome.code is StatusCode.OK, outcome


@pytest.mark.parametrize(
    "interval",
    [{"seconds": 1, "nanos": 1_000_000_000}, {"seconds": -1, "nanos": 5}, {"seconds": 400_000_000_000}],
    ids=["nanos of a whole second", "signs disagree", "beyond ten thousand years"],
)
def test_durations_a_duration_cannot_hold_are_invalid_argument(
    interval: dict[str, int], stack: Stack, device: Device
) -> None:
    request = query_pb2.ListReadingsRequest(device_id=device.device_id, interval=interval)
    _refused(_list(stack, request), "interval")


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def _forged_cursors(device: Device) -> list[dict[str, object]]:
    return [
        {},
        {"s": "x", "e": 1},
        {"s": 10**30, "e": 10**30},
        {"s": 0, "e": 10**15, "q": 5},
        {"s": 0, "e": 10**15, "q": ["mpu", "acceleration_x"], "a": "zz"},
        {"s": 0, "e": 10**15, "q": ["mpu", "acceleration_x"], "a": [10**30, 1]},
        {"s": 0, "e": 10**15, "q": ["mpu", "acceleration_x"], "b": "later"},
        {"s": 0, "e": 10**15, "q": [1, 2, 3]},
        {"s": 10**15, "e": 0},
    ]


def test_page_tokens_never_issued_are_invalid_argument(stack: Stack, device: Device) -> None:
    request = query_pb2.ListReadingsRequest(device_id=device.device_id)
    parameters = _token_parameters(request)
    tokens = [
        "garbage",
        "!!!",
        "a" * 1024,
        _token([1, 2]),
        _token({"v": 1, "k": "readings", "f": "x", "c": {}}),
    ]
    tokens += [encode("readings", parameters, cursor) for cursor in _forged_cursors(device)]
    tokens += [encode("devices", parameters, {"after": "x"})]  # a token of another list
    for token in tokens:
        request.page_token = token
        _refused(_list(stack, request), "page_token")


def test_a_page_token_given_with_other_parameters_is_invalid_argument(stack: Stack, device: Device) -> None:
    readings = [imu_reading(offset_s=-60 + i / 10) for i in range(5)]
    write = ingest_pb2.WriteReadingsRequest(device_id=device.device_id, readings=readings)
    assert unary(stack.envoy_target, WRITE, write.SerializeToString(), device.metadata).code is StatusCode.OK
    first = _list(stack, query_pb2.ListReadingsRequest(device_id=device.device_id, page_size=2))
    token = query_pb2.ListReadingsResponse.FromString(first.response).next_page_token
    assert token

    other = query_pb2.ListReadingsRequest(
        device_id=device.device_id, page_size=2, page_token=token, sensors=["x"]
    )
    _refused(_list(stack, other), "page_token")
    same = query_pb2.ListReadingsRequest(device_id=device.device_id, page_size=3, page_token=token)
    assert _list(stack, same).code is StatusCode.OK  # page_size may change between pages


@pytest.mark.parametrize(
    "cursor",
    [{"after": 5}, {"after": "\x00"}, {"after": "Not A Device"}, {}],
    ids=["number", "NUL", "not an id", "empty"],
)
def test_forged_device_page_tokens_are_invalid_argument(cursor: dict[str, object], stack: Stack) -> None:
    token = encode("devices", {"status": 0, "type": 0}, cursor)
    outcome = unary(
        stack.envoy_target,
        DEVICES + "ListDevices",
        device_pb2.ListDevicesRequest(page_token=token).SerializeToString(),
        stack.admin_metadata,
    )
    _refused(outcome, "page_token")


@pytest.mark.parametrize("count", [101, 20_000])
def test_huge_repeated_filters_are_refused_by_their_limit(count: int, stack: Stack, device: Device) -> None:
    names = [f"sensor-{i}" for i in range(count)]
    for method, request in (
        (
            "ListReadings",
            query_pb2.ListReadingsRequest(device_id=device.device_id, sensors=names, quantities=names),
        ),
        ("GetLatestReadings", query_pb2.GetLatestReadingsRequest(device_id=device.device_id, sensors=names)),
    ):
        outcome = unary(stack.envoy_target, QUERY + method, request.SerializeToString(), stack.admin_metadata)
        _refused(outcome, "sensors")
        assert "100" in outcome.violations["sensors"]  # type: ignore[index]
    watch = query_pb2.WatchReadingsRequest(device_id=device.device_id, quantities=names)
    _refused(_watch(stack, watch), "quantities")
