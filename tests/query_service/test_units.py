"""Page tokens, the subscription queue and bucket alignment, without a server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sensormesh.v1 import reading_pb2

from query_service.live.subscription import Subscription
from query_service.storage.history import rollups_for
from query_service.storage.live_rows import LiveReading
from sensormesh_core import page_tokens
from sensormesh_core.errors import InvalidArgument
from sensormesh_core.storage.time_buckets import ceil_to, floor_to

PARAMS = {"device_id": "pi-1", "sensors": ["a"]}


@given(cursor=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=20), max_size=4))
def test_a_token_round_trips_its_cursor(cursor: dict[str, object]) -> None:
    token = page_tokens.encode("readings", PARAMS, cursor)
    assert page_tokens.decode(token, "readings", PARAMS) == cursor


@given(garbage=st.text(max_size=200))
def test_anything_else_is_an_invalid_page_token(garbage: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_tokens.decode(garbage, "readings", PARAMS)
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_a_token_of_another_query_or_list_is_refused() -> None:
    token = page_tokens.encode("readings", PARAMS, {"q": 1})
    with pytest.raises(InvalidArgument, match="parameters differ"):
        page_tokens.decode(token, "readings", {**PARAMS, "sensors": ["b"]})
    with pytest.raises(InvalidArgument):
        page_tokens.decode(token, "devices", PARAMS)


def _reading(sequence: int, sensor: str = "s", quantities: tuple[str, ...] = ("temperature",)) -> LiveReading:
    return LiveReading(
        sequence, datetime.now(UTC), sensor, frozenset(quantities), reading_pb2.Reading(sensor=sensor)
    )


async def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    sub = Subscription("pi-1", queue_size=2)
    for batch in range(5):
        sub.offer([_reading(10 * batch + i + 1) for i in range(3)])
    first = await sub.next(1)
    assert first is not None and first.missed_count == 9 and len(first.readings) == 3
    second = await sub.next(1)
    assert second is not None and second.missed_count == 0
    assert await sub.next(0.01) is None  # nothing left: the caller sends a heartbeat


async def test_filters_and_the_replay_mark_apply() -> None:
    sub = Subscription("pi-1", sensors=["imu"], quantities=["acceleration_x"])
    sub.skip_through = 5
    sub.offer(
        [
            _reading(4, "imu", ("acceleration_x",)),  # replayed already
            _reading(6, "imu", ("acceleration_x", "acceleration_y")),
            _reading(7, "env", ("acceleration_x",)),
            _reading(8, "imu", ("temperature",)),
        ]
    )
    delivery = await sub.next(1)
    assert delivery is not None and len(delivery.readings) == 1


async def test_close_wakes_a_waiting_subscriber() -> None:
    from query_service.live.live_queue import SubscriptionClosed

    sub = Subscription("pi-1")
    waiting = asyncio.create_task(sub.next(10))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await waiting


def test_buckets_align_to_the_epoch_and_rollups_nest() -> None:
    moment = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)
    assert floor_to(moment, timedelta(minutes=1)) == datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    assert ceil_to(moment, timedelta(minutes=1)) == datetime(2026, 5, 4, 10, 1, tzinfo=UTC)
    assert floor_to(moment, timedelta(days=7)).weekday() == 3  # 1970-01-01 was a Thursday
    assert rollups_for(timedelta(hours=2)) == [("1h", timedelta(hours=1)), ("1m", timedelta(minutes=1))]
    assert rollups_for(timedelta(minutes=5)) == [("1m", timedelta(minutes=1))]
    assert rollups_for(timedelta(seconds=90)) == []
