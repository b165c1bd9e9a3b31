"""Hypothesis strategies for DeviceService JSON bodies (CreateDevice,
UpdateDevice with a mask): each field absent, valid, refused by the service or
by the transcoder, and the verdict the stack must give (rest_cases.py has the
stages and the query strings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.bad_input.rest_cases import ENUMS, OK, SERVICE, TRANSCODER, Verdict, kind_of

# JSON bodies of DeviceService: each field absent, valid, refused by the service or by the transcoder.
ABSENT = object()
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
LABEL = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)


@dataclass(frozen=True)
class Value:
    json: Any  # ABSENT: leave the key out
    problem: str = OK  # OK, SERVICE or TRANSCODER
    field: str | None = None  # the field the answer names ("device.labels" covers any label's path)


@st.composite
def texts(draw: st.DrawFn, name: str, limit: int) -> Value:
    kind = kind_of(draw, ["absent", "text", "null"], ["too long", "nul", "number"])
    path = f"device.{name}"
    if kind == "absent":
        return Value(ABSENT)
    if kind == "text":
        return Value(draw(TEXT))
    if kind == "null":
        return Value(None)  # JSON null: the field's default
    if kind == "too long":
        return Value("é" * (limit + 1), SERVICE, path)
    if kind == "nul":
        return Value("before\x00after", SERVICE, path)
    return Value(draw(st.integers(-5, 5)), TRANSCODER, name)


@st.composite
def enum_values(draw: st.DrawFn, name: str) -> Value:
    known = ENUMS[name]
    kind = kind_of(draw, ["absent", "name", "lower", "number"], ["unknown number", "unknown name", "bool"])
    if kind == "absent":
        return Value(ABSENT)
    if kind == "name":
        return Value(draw(st.sampled_from(known)))
    if kind == "lower":
        return Value(draw(st.sampled_from(known)).lower())
    if kind == "number":
        return Value(draw(st.integers(0, 2)))
    if kind == "unknown number":  # a JSON number the transcoder passes on: the service refuses it
        return Value(draw(st.integers(3, 99)), SERVICE, f"device.{name}")
    if kind == "unknown name":
        return Value("DEVICE_TOASTER", TRANSCODER, name)
    return Value(True, TRANSCODER, name)


@st.composite
def label_maps(draw: st.DrawFn) -> Value:
    kind = kind_of(draw, ["absent", "valid"], ["bad key", "bad value", "too many", "number"])
    if kind == "absent":
        return Value(ABSENT)
    labels = draw(st.dictionaries(LABEL, LABEL | st.just(""), max_size=4))
    if kind == "valid":
        return Value(labels)
    if kind == "bad key":
        return Value({**labels, "bad key": "x"}, SERVICE, "device.labels")
    if kind == "bad value":
        return Value({**labels, "k": "no spaces allowed"}, SERVICE, "device.labels")
    if kind == "too many":
        return Value({f"k{i}": "v" for i in range(33)}, SERVICE, "device.labels")
    return Value({"k": 5}, TRANSCODER, "labels")


@st.composite
def device_ids(draw: st.DrawFn) -> Value:
    kind = kind_of(draw, ["fresh"], ["absent", "bad", "number"])
    if kind == "fresh":
        return Value("FRESH")  # replaced by an unused id when the request is built
    if kind == "absent":
        return Value(ABSENT, SERVICE, "device.device_id")
    if kind == "bad":
        bad = draw(st.sampled_from(["Greenhouse_Pi", "-pi", "pi-", "x" * 64, "", "pi 1", "pi\x00"]))
        return Value(bad, SERVICE, "device.device_id")
    return Value(42, TRANSCODER, "device_id")


@dataclass(frozen=True)
class BodyCase:
    values: dict[str, Value]  # by JSON name
    noise: dict[str, Any]  # fields the contract does not have, or output-only ones: ignored

    def body(self, fresh_id: str) -> dict[str, Any]:
        body = {
            k: (fresh_id if v.json == "FRESH" else v.json)
            for k, v in self.values.items()
            if v.json is not ABSENT
        }
        return {**body, **self.noise}

    def verdict(self) -> Verdict:
        transcoder = [v for v in self.values.values() if v.problem == TRANSCODER]
        if transcoder:
            return Verdict(400, message_names=tuple(v.field for v in transcoder if v.field))
        service = frozenset(v.field for v in self.values.values() if v.problem == SERVICE and v.field)
        return Verdict(400, service) if service else Verdict(200)


NOISE = st.sampled_from(
    [
        {},
        {},
        {"colour": "red"},
        {"createTime": "2000-01-01T00:00:00Z", "committedSequence": "99"},
        {"sensors": [{"name": "x"}]},
    ]
)


@st.composite
def create_device_cases(draw: st.DrawFn) -> BodyCase:
    values = {
        "deviceId": draw(device_ids()),
        "displayName": draw(texts("display_name", 128)),
        "description": draw(texts("description", 1024)),
        "type": draw(enum_values("type")),
        "status": draw(enum_values("status")),
        "labels": draw(label_maps()),
    }
    return BodyCase(values, draw(NOISE))


UPDATABLE = {
    "displayName": "display_name",
    "description": "description",
    "type": "type",
    "status": "status",
    "labels": "labels",
}


@dataclass(frozen=True)
class UpdateCase:
    body: BodyCase  # without deviceId
    mask: tuple[str, ...] | None  # JSON paths for ?updateMask=, or None


@st.composite
def update_device_cases(draw: st.DrawFn) -> UpdateCase:
    values = {
        "displayName": draw(texts("display_name", 128)),
        "description": draw(texts("description", 1024)),
        "type": draw(enum_values("type")),
        "status": draw(enum_values("status")),
        "labels": draw(label_maps()),
    }
    mask = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.sampled_from([*UPDATABLE, "deviceId", "bogus"]), min_size=1, max_size=3, unique=True
            ).map(tuple),
            st.just(("*",)),
        )
    )
    return UpdateCase(BodyCase(values, draw(NOISE)), mask)
