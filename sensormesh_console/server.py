"""A static file server for the built console, and nothing else.

Envoy routes `GET /` and `GET /assets/...` here; every API call goes from the browser
to Envoy (gRPC-Web, REST) on the same origin, never to this process. It serves only
the files Vite wrote: `index.html` (revalidated on every load, so a new build is
picked up at once) and content-hashed assets (cached for a year), and the runtime
configuration `/console-config.json` (single sign-on, settings.py). Anything else
is 404, and no path can leave `dist/`.

Text files are gzipped once, at start, at the highest level, and served so to every
client that accepts gzip (Envoy's compressor handles only the API's JSON, made per
request): the first load's script is a third of its size on the wire.
"""

from __future__ import annotations

import gzip
import logging
import mimetypes
import threading
from dataclasses import dataclass, field
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


MIN_GZIP_BYTES = 1024  # smaller files gain less than gzip's own header and a request's cost


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    cache_control: str
    gzipped: bytes | None = field(default=None, repr=False)  # the body gzipped, when that pays

    @classmethod
    def of(cls, body: bytes, content_type: str, cache_control: str) -> Asset:
        compressible = content_type.startswith(("text/", "application/json", "image/svg")) or (
            "javascript" in content_type
        )
        gzipped = None
        if compressible and len(body) >= MIN_GZIP_BYTES:
            packed = gzip.compress(body, compresslevel=9, mtime=0)  # mtime 0: the same bytes every start
            gzipped = packed if len(packed) < len(body) else None
        return cls(body, content_type, cache_control, gzipped)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110: by name or `*`, unless q=0)."""
    allowed: dict[str, bool] = {}
    for item in (accept_encoding or "").split(","):
        name, _, parameters = item.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name:
            allowed[name.strip().lower()] = quality > 0
    return allowed.get("gzip", allowed.get("x-gzip", allowed.get("*", False)))


def load_assets(dist: Path = DIST, config: ConsoleConfig | None = None) -> dict[str, Asset]:
    """URL path -> file, read once at start: `/` (index.html), every file under assets/, and
    the configuration document."""
    index = dist / INDEX
    if not index.is_file():
        raise ConsoleNotBuilt(f"{index} is missing: build the console with `make console`")
    assets = {"/": Asset.of(index.read_bytes(), "text/html; charset=utf-8", "no-cache")}
    assets["/index.html"] = assets["/"]
    for path in sorted((dist / "assets").glob("*")):
        if path.is_file():
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type.endswith("javascript"):
                content_type += "; charset=utf-8"
            immutable = "public, max-age=31536000, immutable"  # names carry a hash of the content
            assets[f"/assets/{path.name}"] = Asset.of(path.read_bytes(), content_type, immutable)
    document = (config or ConsoleConfig()).document()
    assets[CONFIG_PATH] = Asset.of(document, "application/json", "no-cache")
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
            payload = asset.body
            self.send_header("content-type", asset.content_type)
            if asset.gzipped is not None:
                self.send_header("vary", "accept-encoding")
                if accepts_gzip(self.headers.get("accept-encoding")):
                    payload = asset.gzipped
                    self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(payload)))
            self.send_header("cache-control", asset.cache_control)
            self.send_header("x-content-type-options", "nosniff")
            self.send_header("content-security-policy", policy)
            self.end_headers()
            if body:
                self.wfile.write(payload)

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
