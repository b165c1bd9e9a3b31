"""`sensormesh console`'s file server: the page and its hashed assets, nothing else."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensormesh_console.server import ConsoleNotBuilt, ConsoleServer, accepts_gzip
from sensormesh_console.settings import ConsoleConfig, SsoClient


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not served")
    return tmp_path


@pytest.fixture
def server(dist: Path) -> Iterator[ConsoleServer]:
    server = ConsoleServer("127.0.0.1", 0, dist)
    server.start()
    yield server
    server.stop()


def _get(server: ConsoleServer, path: str, method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request(method, path)
    return connection.getresponse()


def test_the_page_is_served_at_the_root_and_revalidated_every_time(server: ConsoleServer) -> None:
    response = _get(server, "/")
    assert response.status == 200
    assert response.read().startswith(b"<!doctype html>")
    assert response.getheader("content-type") == "text/html; charset=utf-8"
    assert response.getheader("cache-control") == "no-cache"
    assert "default-src 'self'" in (response.getheader("content-security-policy") or "")
    assert _get(server, "/?from=bookmark").status == 200


def test_hashed_assets_are_cached_for_a_year(server: ConsoleServer) -> None:
    response = _get(server, "/assets/index-abc123.js")
    assert response.status == 200
    assert response.read() == b"console.log(1)"
    assert response.getheader("content-type") == "text/javascript; charset=utf-8"
    assert response.getheader("cache-control") == "public, max-age=31536000, immutable"
    head = _get(server, "/assets/index-abc123.js", method="HEAD")
    assert (head.status, head.read()) == (200, b"")


@pytest.mark.parametrize(
    "path", ["/secret.txt", "/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/v1/devices", "/assets/"]
)
def test_anything_else_is_not_found(server: ConsoleServer, path: str) -> None:
    response = _get(server, path)
    assert response.status == 404
    assert b"not served" not in response.read()


def test_an_unbuilt_console_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ConsoleNotBuilt, match="make console"):
        ConsoleServer("127.0.0.1", 0, tmp_path)


def test_unconfigured_the_config_says_no_single_sign_on(server: ConsoleServer) -> None:
    response = _get(server, "/console-config.json")
    assert response.status == 200
    assert json.loads(response.read()) == {"sso": None}
    assert response.getheader("cache-control") == "no-cache"
    assert "connect-src 'self';" in (_get(server, "/").getheader("content-security-policy") or "")


def test_with_single_sign_on_the_config_names_the_provider_and_the_page_may_reach_it(dist: Path) -> None:
    sso = SsoClient("https://login.example.com/", "console", "openid profile", "sensormesh")
    config = ConsoleConfig(
        sso=sso, connect_origins=("https://login.example.com", "https://tokens.example.com")
    )
    server = ConsoleServer("127.0.0.1", 0, dist, config=config)
    server.start()
    try:
        document = json.loads(_get(server, "/console-config.json").read())
        policy = _get(server, "/").getheader("content-security-policy") or ""
    finally:
        server.stop()
    assert document == {
        "sso": {
            "issuer": "https://login.example.com/",
            "clientId": "console",
            "scopes": "openid profile",
            "audience": "sensormesh",
        }
    }
    assert "connect-src 'self' https://login.example.com https://tokens.example.com;" in policy


def _get_with(server: ConsoleServer, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", path, headers=headers)
    return connection.getresponse()


def test_text_assets_go_gzipped_to_clients_that_accept_gzip_and_plain_to_others(dist: Path) -> None:
    script = "export const answer = 42;\n" * 400  # 10 KB that compresses well
    (dist / "assets" / "big-0f0f0f.js").write_text(script)
    server = ConsoleServer("127.0.0.1", 0, dist)
    server.start()
    try:
        zipped = _get_with(server, "/assets/big-0f0f0f.js", {"accept-encoding": "br, gzip;q=0.8"})
        body = zipped.read()
        assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "accept-encoding"
        assert gzip.decompress(body).decode() == script and len(body) < len(script) / 10
        assert int(zipped.headers["content-length"]) == len(body)
        for refuses in ({}, {"accept-encoding": "br"}, {"accept-encoding": "gzip;q=0, *"}):
            plain = _get_with(server, "/assets/big-0f0f0f.js", refuses)
            assert plain.headers["content-encoding"] is None and plain.read().decode() == script
        small = _get_with(server, "/assets/index-abc123.js", {"accept-encoding": "gzip"})
        assert small.headers["content-encoding"] is None  # too small to gain
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("header", "accepted"),
    [("gzip", True), ("GZIP;q=1.0", True), ("br, *", True), ("x-gzip", True), ("gzip;q=0", False),
     ("*;q=0", False), ("", False), (None, False), ("gzip;q=junk", False), ("identity", False)],
)  # fmt: skip
def test_accept_encoding_is_read_as_rfc_9110_says(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted
