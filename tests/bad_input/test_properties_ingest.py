"""Property: whatever upload a device sends, over gRPC directly or through
Envoy, the ingest service answers what the contract says and stores exactly
the valid readings of the batches it accepted.

Hypothesis draws UploadReadings streams (1-4 batches of 0-8 readings, about a
third of them spoiled in one of ~25 ways, gaps in the numbering, reports and
statuses, sometimes one batch spoiled as a whole, sometimes bad credentials)
and WriteReadings calls. For each, an oracle (upload_cases.py) computes the
status, the field an error must name, the response's counts and rejections,
the mark, and how many readings and dead letters the database must gain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import event, given
from sensormesh.v1 import ingest_pb2

from tests.bad_input.budget import examples
from tests.bad_input.messages import UPLOAD, WRITE, with_invalid_utf8
from tests.bad_input.stack import (
    Device,
    Outcome,
    Stack,
    client_stream,
    committed,
    dead_letter_count,
    stored_count,
    unary,
)
from tests.bad_input.upload_cases import (
    UTF8_MARK,
    Expected,
    StreamCase,
    WriteCase,
    expect_stream,
    expect_write,
    materialize_batch,
    stream_cases,
    write_cases,
    write_request,
)

pytestmark = pytest.mark.storage


@pytest.fixture
def other(stack: Stack) -> Device:
    return stack.register("other")


def _credentials(auth: str, device: Device, other: Device) -> tuple[tuple[str, str], ...]:
    return {
        "own": device.metadata,
        "missing": (),
        "garbage": (("authorization", "Bearer smdt_not-a-token"),),
        "other device's": other.metadata,
    }[auth]


class Ledger:
    """The device's numbers before a call, to compare with after it. Valid readings are
    sampled within the last two days, so only those days' partitions are counted."""

    def __init__(self, db: psycopg.Connection, device_id: str) -> None:
        self.db, self.device_id = db, device_id
        self.since = datetime.now(UTC) - timedelta(days=3)
        self.mark = committed(db, device_id)
        self.stored = stored_count(db, device_id, self.since)
        self.letters = dead_letter_count(db, device_id)

    def check(self, expected: Expected) -> None:
        assert committed(self.db, self.device_id) == expected.mark
        stored = stored_count(self.db, self.device_id, self.since)
        assert stored - self.stored == expected.accepted, "valid readings lost or added"
        assert dead_letter_count(self.db, self.device_id) - self.letters == len(expected.rejected)


def _check_status(outcome: Outcome, expected: Expected) -> None:
    assert outcome.code is expected.code, (outcome, expected)
    event(outcome.code.name)
    if expected.named is not None:
        assert outcome.violations and expected.named in outcome.violations, (outcome, expected)


@examples(120)
@given(case=stream_cases())
def test_upload_streams_are_answered_and_stored_as_the_contract_says(
    case: StreamCase, stack: Stack, device: Device, other: Device, db: psycopg.Connection
) -> None:
    ledger = Ledger(db, device.device_id)
    built, after = [], ledger.mark
    for batch in case.batches:
        made = materialize_batch(batch, device.device_id, other.device_id, after)
        built.append(made)
        after = made[0].last_sequence
    payloads = [
        with_invalid_utf8(request, UTF8_MARK)
        if batch.defect == "sensor not UTF-8"
        else request.SerializeToString()
        for batch, (request, _, _) in zip(case.batches, built, strict=True)
    ]
    target = stack.envoy_target if case.via_envoy else stack.ingest_target

    outcome = client_stream(target, UPLOAD, payloads, _credentials(case.auth, device, other))

    expected = expect_stream(case, built, ledger.mark)
    _check_status(outcome, expected)
    if outcome.code.value[0] == 0:
        response = ingest_pb2.UploadReadingsResponse.FromString(outcome.response)
        assert response.committed_sequence == expected.mark
        assert (response.accepted_count, response.rejected_count) == (
            expected.accepted,
            len(expected.rejected),
        )
        assert [(r.sequence, r.index, r.field) for r in response.rejected] == expected.rejected
    ledger.check(expected)


@examples(120)
@given(case=write_cases())
def test_write_calls_are_answered_and_stored_as_the_contract_says(
    case: WriteCase, stack: Stack, device: Device, other: Device, db: psycopg.Connection
) -> None:
    ledger = Ledger(db, device.device_id)
    request = write_request(case, device.device_id, other.device_id, ledger.mark)
    target = stack.envoy_target if case.via_envoy else stack.ingest_target

    outcome = unary(target, WRITE, request.SerializeToString(), _credentials(case.auth, device, other))

    expected = expect_write(case, ledger.mark)
    _check_status(outcome, expected)
    if outcome.code.value[0] == 0:
        response = ingest_pb2.WriteReadingsResponse.FromString(outcome.response)
        assert response.committed_sequence == expected.mark
        assert (response.accepted_count, response.rejected_count) == (
            expected.accepted,
            len(expected.rejected),
        )
        assert [(r.sequence, r.index, r.field) for r in response.rejected] == expected.rejected
    elif expected.named and expected.named.startswith("readings["):  # every reading refused: each is named
        assert outcome.violations is not None
        assert set(outcome.violations) == {
            f"readings[{i}].{f.removeprefix('reading.')}" for _, i, f in _all_refused(case)
        }
    ledger.check(expected)


def _all_refused(case: WriteCase) -> list[tuple[int, int, str]]:
    return [(0, i, r.expected_field) for i, r in enumerate(case.readings) if r.expected_field is not None]
