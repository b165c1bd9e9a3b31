"""The README stays true: its generated sections match the code, and every REST example names a
route Envoy's transcoder serves, with parameters and body fields the request has.

(The local stack's examples are also run as printed against a running stack, in
tests/sensormesh_cli/stack/test_up.py.)
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor
from sensormesh.v1 import (
    access_pb2,
    alert_pb2,
    audit_pb2,
    command_pb2,
    device_pb2,
    frame_pb2,
    ingest_pb2,
    query_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
URL = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost):8080(/v1/\S*)")


@dataclass(frozen=True)
class Route:
    verb: str
    pattern: re.Pattern[str]
    request: Descriptor
    body: str

    def body_message(self) -> Descriptor:
        return self.request if self.body == "*" else self.request.fields_by_name[self.body].message_type


def _routes() -> list[Route]:
    routes = []
    for module in (
        access_pb2,
        alert_pb2,
        audit_pb2,
        command_pb2,
        device_pb2,
        frame_pb2,
        ingest_pb2,
        query_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                top = method.GetOptions().Extensions[annotations_pb2.http]
                for rule in (top, *top.additional_bindings):
                    verb = rule.WhichOneof("pattern")
                    if verb is None:
                        continue
                    template = getattr(rule, verb)
                    regex = re.sub(
                        r"\{[^}]+\}", "[^/:]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
                    )
                    routes.append(Route(verb.upper(), re.compile(f"^{regex}$"), method.input_type, rule.body))
    return routes


def _rest_examples() -> list[list[str]]:
    examples = []
    for text in README.read_text().splitlines():
        stripped = text.strip()
        if stripped.startswith("curl ") and URL.search(stripped):
            examples.append(shlex.split(stripped, comments=True))
    return examples


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_generated_sections_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_has_rest_examples_for_reads_writes_and_feeds() -> None:
    urls = " ".join(arg for example in _rest_examples() for arg in example)
    for fragment in (
        "readings:latest",
        "readings:watch",
        "readings:write",
        "interval=",
        "/v1/devices",
        "frames:latest",
        "frames:watch",
    ):
        assert fragment in urls


@pytest.mark.parametrize(
    "argv", _rest_examples(), ids=lambda argv: next(a for a in argv if URL.search(a))[-60:]
)
def test_each_rest_example_names_a_transcoded_route(argv: list[str]) -> None:
    url = next(URL.search(arg) for arg in argv if URL.search(arg))
    assert url is not None
    path, _, query = url.group(1).partition("?")
    data = argv[argv.index("-d") + 1] if "-d" in argv else None
    verb = argv[argv.index("-X") + 1] if "-X" in argv else ("POST" if data is not None else "GET")
    matches = [r for r in _routes() if r.verb == verb and r.pattern.match(path)]
    assert len(matches) == 1, f"{verb} {path} is not one of the transcoder's routes"
    route = matches[0]
    known = {f.json_name for f in route.request.fields} | {f.name for f in route.request.fields}
    for pair in filter(None, query.split("&")):
        name = pair.partition("=")[0]
        assert name.split(".")[0] in known, f"{name} is not a field of {route.request.name}"
    if data is not None:
        body = json.loads(data)
        fields = {f.json_name for f in route.body_message().fields}
        assert set(body) <= fields, f"{set(body) - fields} not in {route.body_message().name}"
        assert all(_camel(key) == key for key in body)
