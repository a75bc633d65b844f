"""HTTP endpoints: /metrics from prepared bytes, health, readiness, reload, landing page."""

from __future__ import annotations

import gzip
import html
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.exposition import CONTENT_TYPE, ExpositionCache

log = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"
ReloadHook = Callable[[], str | None]  # returns None on success, else the reason it failed


@dataclass(frozen=True)
class Endpoints:
    """What the HTTP server serves; every part is prepared elsewhere."""

    cache: ExpositionCache
    registry: CollectorRegistry
    ready: threading.Event
    reload: ReloadHook
    authorize: Callable[[BaseHTTPRequestHandler], bool] = lambda _handler: True
    headers: tuple[tuple[str, str], ...] = ()
    healthy: Callable[[], bool] = lambda: True  # False once the poll loop stopped finishing cycles


class _Handler(BaseHTTPRequestHandler):
    endpoints: Endpoints  # set on the per-server subclass
    server_version = f"uminfer-exporter/{__version__}"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a kept-alive scrape's body waits for a delayed ACK
    timeout = 30  # a client that connects and says nothing must not hold a thread forever

    def do_GET(self) -> None:
        """Serve the read-only endpoints."""
        if not self.endpoints.authorize(self):
            return
        path = self.path.split("?", 1)[0]
        routes = {"/metrics": self._metrics, "/-/healthy": self._healthy,
                  "/-/ready": self._ready, "/": self._landing}
        route = routes.get(path)
        if path == "/-/reload":
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"use POST\n")
        elif route is None:
            self._reply(HTTPStatus.NOT_FOUND, b"404 page not found\n")
        else:
            route()

    def do_POST(self) -> None:
        """Serve /-/reload."""
        if not self.endpoints.authorize(self):
            return
        if self.path.split("?", 1)[0] != "/-/reload":
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"only /-/reload takes POST\n")
            return
        problem = self.endpoints.reload()
        if problem is None:
            self._reply(HTTPStatus.OK, b"config reloaded\n")
        else:
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, f"reload failed: {problem}\n".encode())

    def do_PUT(self) -> None:
        """PUT /-/reload, as Prometheus accepts it too."""
        self.do_POST()

    def _metrics(self) -> None:
        compressed = "gzip" in self.headers.get("Accept-Encoding", "")
        own = generate_latest(self.endpoints.registry)
        # A gzip stream may hold several members; the cached member is made once per cycle.
        tail = gzip.compress(own, 1, mtime=0) if compressed else own
        body = self.endpoints.cache.body(compressed) + tail
        extra = (("Content-Encoding", "gzip"),) if compressed else ()
        self._reply(HTTPStatus.OK, body, CONTENT_TYPE, extra)

    def _healthy(self) -> None:
        if self.endpoints.healthy():
            self._reply(HTTPStatus.OK, b"Healthy.\n")
        else:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE,
                        b"Unhealthy: no poll cycle has finished for too long.\n")

    def _ready(self) -> None:
        if self.endpoints.ready.is_set():
            self._reply(HTTPStatus.OK, b"Ready.\n")
        else:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"Not ready: the first poll is running.\n")

    def _landing(self) -> None:
        links = "".join(f'<li><a href="{p}">{html.escape(p)}</a></li>'
                        for p in ("/metrics", "/-/healthy", "/-/ready"))
        page = (f"<!DOCTYPE html><html><head><title>uminfer-exporter</title></head><body>"
                f"<h1>uminfer-exporter {html.escape(__version__)}</h1>"
                f"<p>Prometheus exporter for LLM token usage (GetUMInferTokenUsage).</p>"
                f"<ul>{links}</ul><p>POST /-/reload reloads the configuration.</p></body></html>")
        self._reply(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = _TEXT,
               extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*self.endpoints.headers, *extra):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        """HEAD is GET without the body."""
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Access logs at debug level only: scrapes every few seconds are not news."""
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one listen address."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, endpoints: Endpoints) -> None:
        handler = type("Handler", (_Handler,), {"endpoints": endpoints})
        self.address_family = _family(host)
        super().__init__((host, port), handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """One line at debug level: failed TLS handshakes and port scans are not news."""
        log.debug("connection from %s ended with an error: %s", client_address, sys.exc_info()[1])

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self.server_address[1])


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``:PORT`` means every interface, ``[::1]:PORT`` for IPv6)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: expected HOST:PORT, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (listening everywhere is the default)
    return host, int(port)
