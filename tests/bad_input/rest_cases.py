"""Hypothesis strategies for REST requests through Envoy (query parameters and
JSON bodies), each part valid or spoiled in a known way, and the oracle that
says how the stack must answer.

Who answers what, in the order a request meets them:
1. the Lua filter: a query parameter naming the device the path binds (400, `device_id`);
2. the transcoder: an unknown parameter, a value its type cannot hold, a JSON
   value of the wrong type, an unknown enum name (400, ErrorInfo MALFORMED_REQUEST,
   the message names the field);
3. the service's parser: a string that is not UTF-8 (400 naming each such field);
4. the service's checks: every rule the request breaks (400 naming each field);
5. the page token, then the device's existence (400 `page_token`, 404);
6. otherwise 200, with a body the test checks against what it asked for.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

OK, LUA, TRANSCODER, DECODE, SERVICE, TOKEN = "ok", "lua", "transcoder", "decode", "service", "token"


@dataclass(frozen=True)
class Part:
    """One query parameter (or none): its encoded pairs and the problem it carries."""

    pairs: tuple[tuple[str, str], ...] = ()
    problem: str = OK  # one of the stages above
    field: str | None = None  # the field the answer must name (DECODE, SERVICE, TOKEN)
    value: Any = None  # what it asks for, decoded, when OK


NONE = Part()


def kind_of(draw: st.DrawFn, good: list[str], bad: list[str]) -> str:
    """A kind of value: one of `good` nine times in ten, so that a request of several
    parts is often valid throughout; else one of `bad`. (Shrinks towards good.)"""
    return draw(st.sampled_from(good) if draw(st.integers(0, 9)) < 9 else st.sampled_from(bad))


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def times(draw: st.DrawFn, name: str, proto: str) -> Part:
    kind = kind_of(draw, ["absent", "recent", "recent", "edge"], ["unparsable"])
    if kind == "absent":
        return NONE
    if kind == "recent":
        moment = datetime.now(UTC) + timedelta(seconds=draw(st.integers(-3 * 3600, 600)))
        return Part(((name, _q(_iso(moment))),), value=moment)
    if kind == "edge":
        text = draw(st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z"]))
        return Part(((name, _q(text)),), value=datetime.fromisoformat(text))
    bad = draw(
        st.sampled_from(
            ["yesterday", "10000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "1700000000", "2026-01-01"]
        )
    )
    return Part(((name, _q(bad)),), TRANSCODER, proto)


SENSOR_ITEMS = {
    "mpu6050-0x68": OK,
    "bme280-0x76": OK,
    "nothing-here": OK,
    "-x": SERVICE,
    "a b": SERVICE,
    "": SERVICE,
    "%C3%28": DECODE,  # percent-encoded bytes that are not UTF-8
}
QUANTITY_ITEMS = {
    "temperature": OK,
    "acceleration_x": OK,
    "soil": OK,
    "Temperature": SERVICE,
    "1x": SERVICE,
    "": SERVICE,
    "%FF": DECODE,
}


@st.composite
def filters(draw: st.DrawFn, name: str, items: dict[str, str]) -> Part:
    """0-3 names, or 101 valid ones (over the limit of 100)."""
    kind = kind_of(draw, ["names"], ["101 names", "bad names"])
    if kind == "101 names":
        return Part(tuple((name, f"sensor-{i}") for i in range(101)), SERVICE, name)
    allowed = sorted(items) if kind == "bad names" else sorted(i for i in items if items[i] == OK)
    chosen = draw(st.lists(st.sampled_from(allowed), max_size=3))
    pairs = tuple((name, item if items[item] == DECODE else _q(item)) for item in chosen)
    decode = [f"{name}[{i}]" for i, item in enumerate(chosen) if items[item] == DECODE]
    if decode:
        return Part(pairs, DECODE, ",".join(decode))
    service = [f"{name}[{i}]" for i, item in enumerate(chosen) if items[item] == SERVICE]
    if service:
        return Part(pairs, SERVICE, ",".join(service))
    return Part(pairs, value=chosen)


@st.composite
def intervals(draw: st.DrawFn) -> Part:
    kind = kind_of(draw, ["absent", "ok"], ["service", "transcoder"])
    if kind == "absent":
        return NONE
    if kind == "transcoder":
        return Part((("interval", draw(st.sampled_from(["1m", "abc", "60S"]))),), TRANSCODER, "interval")
    if kind == "service":
        text = draw(st.sampled_from(["0.5s", "2678401s", "-1s", "1.0000001s"]))
        return Part((("interval", text),), SERVICE, "interval")
    text = draw(st.sampled_from(["0s", "1s", "60s", "3600s", "2678400s"]))
    return Part((("interval", text),), value=timedelta(seconds=float(text[:-1])))


@st.composite
def page_sizes(draw: st.DrawFn, most: int) -> Part:
    kind = kind_of(draw, ["absent", "ok"], ["negative", "over", "text"])
    if kind == "absent":
        return NONE
    if kind == "ok":
        size = draw(st.integers(0, most))
        return Part((("pageSize", str(size)),), value=size)
    if kind == "negative":
        return Part((("pageSize", str(draw(st.integers(-(2**31), -1)))),), SERVICE, "page_size")
    if kind == "over":
        return Part((("pageSize", str(draw(st.integers(most + 1, 2**31 - 1)))),), SERVICE, "page_size")
    return Part(
        (("pageSize", draw(st.sampled_from(["abc", "1.5", "2147483648", "", "1e2"]))),),
        TRANSCODER,
        "page_size",
    )


@st.composite
def extras(draw: st.DrawFn) -> Part:
    """Now and then a parameter that is not the method's, or one naming the path's device."""
    kind = kind_of(draw, ["none"], ["unknown", "misspelt", "bound"])
    if kind == "unknown":
        return Part((("colour", "red"),), TRANSCODER, "colour")
    if kind == "misspelt":
        return Part((("quantity", "temperature"),), TRANSCODER, "quantity")
    if kind == "bound":
        return Part((("deviceId", "someone-else"),), LUA, "device_id")
    return NONE


@st.composite
def views(draw: st.DrawFn) -> Part:
    """ListReadings' layout: by name (in any case, as the transcoder parses enums), or a name or
    number the enum does not have, which the transcoder refuses naming `view`."""
    kind = kind_of(draw, ["none", "rows", "columns", "lower case"], ["unknown", "number"])
    if kind == "rows":
        return Part((("view", "READINGS_VIEW_ROWS"),), value="rows")
    if kind == "columns":
        return Part((("view", "READINGS_VIEW_COLUMNS"),), value="columns")
    if kind == "lower case":
        return Part((("view", "readings_view_columns"),), value="columns")
    if kind == "unknown":
        return Part((("view", "READINGS_VIEW_SIDEWAYS"),), TRANSCODER, "view")
    if kind == "number":
        return Part((("view", "7"),), TRANSCODER, "view")
    return NONE


DEVICE_PATHS = {"data": OK, "missing": "missing", "malformed": SERVICE, "not utf-8": DECODE}


@dataclass(frozen=True)
class QueryCase:
    """One GET: the device in the path and the query's parts."""

    device: str  # a key of DEVICE_PATHS
    parts: dict[str, Part] = field(default_factory=dict)

    def url(self, template: str, data_device: str, missing_device: str) -> str:
        device = {
            "data": data_device,
            "missing": missing_device,
            "malformed": "Greenhouse_Pi",
            "not utf-8": "pi-%FF%FE",
        }[self.device]
        pairs = [pair for part in self.parts.values() for pair in part.pairs]
        query = "&".join(f"{name}={value}" for name, value in pairs)
        return template.format(device=device) + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Verdict:
    status: int
    fields: frozenset[str] = frozenset()  # fields the BadRequest must name (exactly, for the service's)
    message_names: tuple[str, ...] = ()  # a transcoder message mentions one of these


def _fields(parts: list[Part], problem: str) -> frozenset[str]:
    return frozenset(name for p in parts if p.problem == problem and p.field for name in p.field.split(","))


def verdict(case: QueryCase, *, cross: list[str] = (), token: bool = False) -> Verdict:  # type: ignore[assignment]
    """The answer the oracle expects; `cross` are fields a rule across parts refuses
    (end_time before start_time), `token` whether a page token was given (garbage)."""
    parts = list(case.parts.values())
    if any(p.problem == LUA for p in parts):
        return Verdict(400, frozenset({"device_id"}))
    transcoder = [p for p in parts if p.problem == TRANSCODER]
    if transcoder:
        return Verdict(400, message_names=tuple(p.field for p in transcoder if p.field))
    decode = _fields(parts, DECODE) | ({"device_id"} if case.device == "not utf-8" else set())
    if decode:
        return Verdict(400, frozenset(decode))
    service = _fields(parts, SERVICE) | set(cross) | ({"device_id"} if case.device == "malformed" else set())
    if service:
        return Verdict(400, frozenset(service))
    if token:
        return Verdict(400, frozenset({"page_token"}))
    if case.device == "missing":
        return Verdict(404)
    return Verdict(200)


@st.composite
def list_readings_cases(draw: st.DrawFn) -> QueryCase:
    parts = {
        "start": draw(times("startTime", "start_time")),
        "end": draw(times("endTime", "end_time")),
        "sensors": draw(filters("sensors", SENSOR_ITEMS)),
        "quantities": draw(filters("quantities", QUANTITY_ITEMS)),
        "interval": draw(intervals()),
        "page_size": draw(page_sizes(100_000)),
        "view": draw(views()),
        "extra": draw(extras()),
    }
    if draw(st.integers(0, 9)) == 0:
        parts["token"] = Part(
            (("pageToken", draw(st.sampled_from(["abc", "e30", "!!!", "x" * 100]))),), TOKEN, "page_token"
        )
    return QueryCase(kind_of(draw, ["data"], ["missing", "malformed", "not utf-8"]), parts)


@st.composite
def latest_cases(draw: st.DrawFn) -> QueryCase:
    parts = {
        "sensors": draw(filters("sensors", SENSOR_ITEMS)),
        "quantities": draw(filters("quantities", QUANTITY_ITEMS)),
        "extra": draw(extras()),
    }
    return QueryCase(kind_of(draw, ["data"], ["missing", "malformed", "not utf-8"]), parts)


@st.composite
def watch_cases(draw: st.DrawFn) -> QueryCase:
    start = kind_of(draw, ["absent", "recent"], ["old", "unparsable"])
    if start == "recent":
        moment = datetime.now(UTC) - timedelta(minutes=draw(st.integers(0, 50)))
        part = Part((("startTime", _q(_iso(moment))),), value=moment)
    elif start == "old":
        moment = datetime.now(UTC) - timedelta(minutes=draw(st.integers(70, 10_000)))
        part = Part((("startTime", _q(_iso(moment))),), SERVICE, "start_time")
    elif start == "unparsable":
        part = Part((("startTime", "soon"),), TRANSCODER, "start_time")
    else:
        part = NONE
    parts = {
        "sensors": draw(filters("sensors", SENSOR_ITEMS)),
        "quantities": draw(filters("quantities", QUANTITY_ITEMS)),
        "start": part,
        "extra": draw(extras()),
    }
    return QueryCase(kind_of(draw, ["data"], ["missing", "malformed", "not utf-8"]), parts)


ENUMS = {
    "status": ("DEVICE_STATUS_ACTIVE", "DEVICE_STATUS_DISABLED"),
    "type": ("DEVICE_TYPE_GATEWAY", "DEVICE_TYPE_DIRECT"),
}


@st.composite
def enum_filters(draw: st.DrawFn, name: str) -> Part:
    kind = kind_of(draw, ["absent", "name", "lower", "number"], ["unknown number", "unknown name"])
    known = ENUMS[name]
    if kind == "absent":
        return NONE
    if kind in ("name", "lower"):
        chosen = draw(st.sampled_from(known))
        return Part(((name, chosen.lower() if kind == "lower" else chosen),), value=chosen)
    if kind == "number":
        number = draw(st.integers(0, 2))
        return Part(((name, str(number)),), value=(None, *known)[number])
    if kind == "unknown number":
        return Part(((name, str(draw(st.integers(3, 99)))),), TRANSCODER, name)
    return Part(((name, "DEVICE_THING"),), TRANSCODER, name)


@st.composite
def list_devices_cases(draw: st.DrawFn) -> QueryCase:
    parts = {
        "page_size": draw(page_sizes(1000)),
        "status": draw(enum_filters("status")),
        "type": draw(enum_filters("type")),
        "extra": draw(extras().filter(lambda p: p.problem != LUA)),  # no path binds a device here
    }
    if draw(st.integers(0, 9)) == 0:
        parts["token"] = Part((("pageToken", "not-a-token"),), TOKEN, "page_token")
    return QueryCase("data", parts)
