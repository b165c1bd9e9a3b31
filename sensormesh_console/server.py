"""A static file server for the built console, and nothing else.

Envoy routes `GET /` and `GET /assets/...` here; every API call goes from the browser
to Envoy (gRPC-Web, REST) on the same origin, never to this process. It serves only
the files Vite wrote: `index.html` (revalidated on every load, so a new build is
picked up at once) and content-hashed assets (cached for a year), and the runtime
configuration `/console-config.json` (single sign-on, settings.py). Anything else
is 404, and no path can leave `dist/`.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sensormesh_console.settings import ConsoleConfig

log = logging.getLogger(__name__)

DIST = Path(__file__).resolve().parent / "dist"
INDEX = "index.html"
CONFIG_PATH = "/console-config.json"


def content_security_policy(connect_origins: tuple[str, ...] = ()) -> str:
    """The app loads only its own files and talks only to its own origin, and with single
    sign-on to its identity provider's (discovery and the token endpoint)."""
    connect = " ".join(("'self'", *connect_origins))
    return (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class ConsoleNotBuilt(RuntimeError):
    """dist/ has no index.html: the console was not built (`make console`)."""


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    cache_control: str


def load_assets(dist: Path = DIST, config: ConsoleConfig | None = None) -> dict[str, Asset]:
    """URL path -> file, read once at start: `/` (index.html), every file under assets/, and
    the configuration document."""
    index = dist / INDEX
    if not index.is_file():
        raise ConsoleNotBuilt(f"{index} is missing: build the console with `make console`")
    assets = {"/": Asset(index.read_bytes(), "text/html; charset=utf-8", "no-cache")}
    assets["/index.html"] = assets["/"]
    for path in sorted((dist / "assets").glob("*")):
        if path.is_file():
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type.endswith("javascript"):
                content_type += "; charset=utf-8"
            immutable = "public, max-age=31536000, immutable"  # names carry a hash of the content
            assets[f"/assets/{path.name}"] = Asset(path.read_bytes(), content_type, immutable)
    document = (config or ConsoleConfig()).document()
    assets[CONFIG_PATH] = Asset(document, "application/json", "no-cache")
    return assets


def _handler(assets: dict[str, Asset], policy: str) -> type[BaseHTTPRequestHandler]:
    class ConsoleHandler(BaseHTTPRequestHandler):
        server_version = "sensormesh-console"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            asset = assets.get(self.path.partition("?")[0])
            if asset is None:
                asset = Asset(b"not found\n", "text/plain; charset=utf-8", "no-cache")
                self.send_response(HTTPStatus.NOT_FOUND)
            else:
                self.send_response(HTTPStatus.OK)
            self.send_header("content-type", asset.content_type)
            self.send_header("content-length", str(len(asset.body)))
            self.send_header("cache-control", asset.cache_control)
            self.send_header("x-content-type-options", "nosniff")
            self.send_header("content-security-policy", policy)
            self.end_headers()
            if body:
                self.wfile.write(asset.body)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # The path without its query: a provider that answers in the query puts its code there.
            path = self.path.partition("?")[0]
            log.debug("event=console_request method=%s path=%s status=%s", self.command, path, code)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("event=console_error %s", format % args)

    return ConsoleHandler


class ConsoleServer:
    """The server on `host:port` (port 0: a free one), serving in a background thread."""

    def __init__(self, host: str, port: int, dist: Path = DIST, config: ConsoleConfig | None = None) -> None:
        config = config or ConsoleConfig()
        handler = _handler(load_assets(dist, config), content_security_policy(config.connect_origins))
        self._http = ThreadingHTTPServer((host, port), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="console", daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("event=console_serving port=%d", self.port)

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
