"""The pages' web server: the standard library's ``ThreadingHTTPServer`` on a daemon thread.

Why not Starlette/uvicorn or aiohttp: the pages need a handful of read-only GET routes for one
local viewer (a few requests a second: JSON, PNG, JPEG), which ``http.server`` serves well; it
adds no dependency (so there is no ``streamsr[ui]`` extra to install), starts in milliseconds, runs
beside the pipeline's threads without an event loop, and is what ``--metrics-port`` already uses.
One thread per request lets a slow frame render not block the JSON polls.

Safety: the server answers GET and HEAD only (anything else is 501); a route is a regular
expression over the URL path; the pages' HTML/JS/CSS are read from the package once, at start,
from a fixed list of names, so no part of a URL ever reaches the filesystem. It listens on
127.0.0.1 unless a host is given explicitly.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError
from ..pipeline.metrics_http import BackgroundServer, http_server
from ..pipeline.metrics_http import parse_listen as _parse_listen
from ..urls import mask_credentials

__all__ = ["ASSETS", "NotFound", "PageServer", "Response", "json_response", "parse_listen"]

log = logging.getLogger("streamsr.ui")

#: the files the pages are made of, and their content types: the only names /static/ serves
ASSETS = {
    "preview.html": "text/html; charset=utf-8",
    "preview.js": "text/javascript; charset=utf-8",
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

#: the pages load nothing from elsewhere (no CDN) and nothing may frame them
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class NotFound(LookupError):
    """What a route raises for something that is not there (yet): answered with 404 and the
    message (an ``IndexError``, a frame past the end, is answered the same way)."""


@dataclass(frozen=True)
class Response:
    """What a route answers.

    Args:
        body: the bytes sent.
        content_type: its MIME type.
        status: the HTTP status.
        cache: seconds a browser may keep it (0: not at all).
    """

    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    cache: int = 0
    headers: dict = field(default_factory=dict)


def json_response(data, status: int = 200) -> Response:
    """``data`` as a JSON response (NaN and infinities become null).

    Args:
        data: anything ``json.dumps`` takes.
        status: the HTTP status.
    """
    text = json.dumps(_finite(data), separators=(",", ":"))
    return Response(text.encode(), "application/json", status)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def parse_listen(value: str, option: str = "--ui-port") -> tuple[str, int]:
    """``PORT`` (localhost) or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port) (see
    :func:`~streamsr.pipeline.metrics_http.parse_listen`)."""
    return _parse_listen(value, option)


Route = Callable[[re.Match, dict[str, str]], Response]


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("streamsr.ui") / "assets"
    return {name: (folder / name).read_bytes() for name in ASSETS}


class PageServer(BackgroundServer):
    """Serves routes and the package's page assets on a daemon thread; a context manager.

    Args:
        host, port: where to listen (port 0 picks a free one; see :attr:`port`).
        routes: ``(pattern, handler)`` pairs; the first pattern that fully matches the URL path
            answers, ``handler(match, query)`` with the query's last value per key.
        index: the asset served at ``/``.
        option: the option that chose the address, for messages.

    Raises:
        ConfigError: the address cannot be listened on (in use, not this machine's).
    """

    def __init__(self, host: str, port: int, routes: list[tuple[str, Route]], index: str,
                 option: str = "--ui-port"):
        assets = _load_assets()
        table = [(re.compile(p), h) for p, h in routes]
        table.append((re.compile(r"/"), lambda m, q: Response(assets[index], ASSETS[index])))
        table.append((re.compile(r"/static/([a-z]+\.[a-z]+)"), lambda m, q: _asset(assets, m.group(1))))
        table.append((re.compile(r"/favicon\.ico"), lambda m, q: Response(b"", "image/x-icon", 204)))

        class Handler(BaseHTTPRequestHandler):
            server_version = "streamsr"
            sys_version = ""

            def do_GET(self):
                self._answer(send_body=True)

            def do_HEAD(self):
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                response = _dispatch(table, parts.path, query)
                try:
                    self.send_response(response.status)
                    headers = {"Content-Type": response.content_type, "Content-Length": str(len(response.body)),
                               "Cache-Control": f"max-age={response.cache}" if response.cache else "no-store",
                               **_SECURITY, **response.headers}
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if send_body:
                        self.wfile.write(response.body)
                except (ConnectionError, TimeoutError):  # the page moved on before the picture came
                    pass

            def log_message(self, *args):  # library code never prints
                return

        try:
            self._server = http_server(host, port, Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve the page on {host}:{port} ({option}): {exc}") from exc
        self._server.daemon_threads = True
        self.host = host
        super().__init__(self._server, "streamsr-ui")

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"



def _asset(assets: dict[str, bytes], name: str) -> Response:
    if name not in assets:
        return Response(b"not found\n", "text/plain", 404)
    return Response(assets[name], ASSETS[name])


def _dispatch(table, path: str, query: dict[str, str]) -> Response:
    for pattern, handler in table:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        try:
            return handler(match, query)
        except (NotFound, IndexError) as exc:  # a frame or camera that is not there
            return json_response({"error": mask_credentials(str(exc))}, 404)
        except ConfigError as exc:  # a bad parameter
            return json_response({"error": mask_credentials(str(exc))}, 400)
        except Exception as exc:  # noqa: BLE001 -- one failed picture must not stop the server
            log.warning("the page's request %s failed: %s", path, mask_credentials(str(exc)))
            return json_response({"error": mask_credentials(str(exc))}, 500)
    return Response(b"not found\n", "text/plain", 404)
