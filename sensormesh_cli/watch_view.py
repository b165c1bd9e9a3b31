"""What `sensormesh watch` shows: a reading's values as lines, and a live table of a device's series.

Pure formatting and bookkeeping, no I/O: the command feeds it the feed's
messages and decides where the text goes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sensormesh.v1 import reading_pb2

from sensormesh_core.storage.schema import TYPED_BY_PAYLOAD

RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class Value:
    """One sample: a quantity of a reading, in its unit."""

    quantity: str
    value: float
    unit: str


def values(reading: reading_pb2.Reading, only: frozenset[str] = frozenset()) -> list[Value]:
    """The samples of a reading (six for an IMU reading, one for a measurement), or those of `only`."""
    kind = reading.WhichOneof("payload")
    if kind is None:
        return []
    if kind == "measurement":
        m = reading.measurement
        found = [Value(m.name, m.value, m.unit)]
    else:
        payload = getattr(reading, kind)
        found = [
            Value(q.name, float(getattr(payload, q.proto_field)), q.unit)
            for q in TYPED_BY_PAYLOAD[kind].quantities
            if q.required or payload.HasField(q.proto_field)
        ]
    return [v for v in found if v.quantity in only] if only else found


def sample_time(reading: reading_pb2.Reading) -> datetime:
    return reading.sample_time.ToDatetime(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _number(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e7 else f"{value:.0f}"


def line(reading: reading_pb2.Reading, only: frozenset[str] = frozenset()) -> str:
    """`<sample time> <sensor> quantity=value unit ...`: one reading per line, for pipes and logs."""
    parts = [
        f"{v.quantity}={_number(v.value)}{' ' + v.unit if v.unit else ''}" for v in values(reading, only)
    ]
    return f"{iso(sample_time(reading))} {reading.sensor} " + " ".join(parts)


@dataclass
class SeriesState:
    """The newest sample of one series and its recent arrival times."""

    value: Value
    sample_time: datetime
    arrivals: deque[float] = field(default_factory=deque)

    def rate(self, now: float) -> float:
        """Samples per second over the last RATE_WINDOW_S seconds."""
        while self.arrivals and self.arrivals[0] < now - RATE_WINDOW_S:
            self.arrivals.popleft()
        if len(self.arrivals) < 2:
            return 0.0
        return (len(self.arrivals) - 1) / max(now - self.arrivals[0], 1e-3)


@dataclass
class DeviceView:
    """Everything the live table shows, updated message by message."""

    device_id: str
    server: str
    only: frozenset[str] = frozenset()  # the quantities asked for; empty for all
    series: dict[tuple[str, str], SeriesState] = field(default_factory=dict)
    readings: int = 0
    missed: int = 0
    state: str = "connecting"
    last_message: float | None = None

    def add(self, readings: list[reading_pb2.Reading], missed: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.last_message = now
        self.missed += missed
        for reading in readings:
            self.readings += 1
            moment = sample_time(reading)
            for value in values(reading, self.only):
                key = (reading.sensor, value.quantity)
                state = self.series.get(key)
                if state is None:
                    state = self.series[key] = SeriesState(value, moment)
                elif moment >= state.sample_time:
                    state.value, state.sample_time = value, moment
                state.arrivals.append(now)

    def rows(self, now: float | None = None) -> list[list[str]]:
        """SENSOR, QUANTITY, VALUE, UNIT, SAMPLE TIME, PER SECOND; sorted by sensor and quantity."""
        now = time.monotonic() if now is None else now
        return [
            [sensor, quantity, _number(s.value.value), s.value.unit, iso(s.sample_time), f"{s.rate(now):.1f}"]
            for (sensor, quantity), s in sorted(self.series.items())
        ]

    def title(self) -> str:
        missed = f", {self.missed} missed (slow terminal)" if self.missed else ""
        return f"{self.device_id} via {self.server}: {self.state}, {self.readings} readings{missed}"
