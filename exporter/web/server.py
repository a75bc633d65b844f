"""HTTP endpoints: /metrics from prepared bytes, health, readiness, reload, landing page.

Every endpoint is served by the same bounded front (:mod:`exporter.web.httpfront`) behind the same
TLS and basic auth. Slow work leaves the event loop for small, separate pools, so no kind of
request can take the threads another kind needs: bcrypt checks (AUTH_THREADS), reloads
(one daemon thread; they wait for a poll cycle to finish, and must never hold up the
process's exit) and /metrics and /-/ledgers rendering (HANDLER_THREADS). /-/ledgers is made
at most once per LEDGERS_SECONDS, whoever asks and however often.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import html
import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.metrics.exposition import CONTENT_TYPE, ExpositionCache
from exporter.web.config import REALM, WebConfig
from exporter.web.httpfront import HttpFront, Limits
from exporter.web.httpwire import Request, Response

ReloadHook = Callable[[], str | None]  # returns None on success, else the reason it failed
HANDLER_THREADS = 4
AUTH_THREADS = 2
RELOAD_THREADS = 1
HTTP_THREADS = 1 + HANDLER_THREADS + AUTH_THREADS + RELOAD_THREADS  # with the event loop's
# bcrypt checks queued or running at most; more are refused at once. At cost 10 (~60 ms) on
# AUTH_THREADS threads this is under a second of queue; a scraper whose credentials passed
# lately never queues (the success cache).
MAX_QUEUED_CHECKS = 16
LEDGERS_SECONDS = 5.0  # /-/ledgers is made at most this often (0.4 s of CPU at 10,000 targets)
PROBES = ("/-/healthy", "/-/ready")  # from loopback they need no password (the image's probe)
T = TypeVar("T")


@functools.cache
def _plain() -> WebConfig:
    """No TLS, no auth (made on first use, not at import)."""
    return WebConfig()


@dataclass(frozen=True)
class Endpoints:
    """What the HTTP server serves; every part is prepared elsewhere."""

    cache: ExpositionCache
    registry: CollectorRegistry
    ready: threading.Event
    reload: ReloadHook
    web: Callable[[], WebConfig] = field(default=_plain)  # read per connection/request
    healthy: Callable[[], bool] = lambda: True  # False once the poll loop stopped finishing cycles
    # The settled ledgers as a JSON document, for a peer replica's bootstrap (/-/ledgers).
    ledgers: Callable[[], bytes] | None = None
    # What the exporter is doing now, as HTML (the landing page shows it).
    status: Callable[[], str] = lambda: ""


class MetricsServer:
    """The exporter's HTTP server on one listen address."""

    def __init__(self, host: str, port: int, endpoints: Endpoints,
                 limits: Limits | None = None) -> None:
        """Bind (raising OSError when the address is taken); :meth:`start` serves."""
        limits = limits or Limits()
        # "[::]" serves IPv4 too, as it did with http.server (create_server alone makes it
        # IPv6-only).
        dual = host == "::" and socket.has_dualstack_ipv6()
        sock = socket.create_server((host, port), family=_family(host), backlog=limits.backlog,
                                    dualstack_ipv6=dual)
        self._endpoints = endpoints
        self._pools = {name: ThreadPoolExecutor(size, thread_name_prefix=f"http-{name}")
                       for name, size in (("handler", HANDLER_THREADS), ("auth", AUTH_THREADS))}
        self._reloads = _DaemonWorker("http-reload")  # RELOAD_THREADS, never joined at exit
        self._ledgers = _Recent(LEDGERS_SECONDS, time.monotonic)
        self._checks = 0  # bcrypt checks queued or running (touched on the event loop only)
        try:
            self._front = HttpFront(sock, self._answer, lambda: endpoints.web().ssl_context(),
                                    limits, f"uminfer-exporter/{__version__}",
                                    admit=self._admit)
        except BaseException:
            sock.close()  # the port is free again at once, not when the collector finds it
            raise

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return self._front.port

    def start(self) -> None:
        """Serve in the background."""
        self._front.start()

    def close(self) -> None:
        """Stop serving; a reload in progress finishes in its own thread."""
        self._front.close()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    async def _admit(self, request: Request) -> Response | None:
        """Basic auth on the request head, before the front reads any body: None admits."""
        web = self._endpoints.web()
        header = request.header("authorization")
        if not web.auth_required or web.recently_authenticated(header):
            return None
        if probe_from_this_host(request):
            return None
        if header is not None and self._checks >= MAX_QUEUED_CHECKS:
            # A stream of wrong passwords has the bcrypt pool busy for longer than a scrape
            # waits: refuse at once rather than queue without bound.
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"Too many password checks "
                            b"waiting; try again.\n", headers=(*web.headers, ("Retry-After", "1")),
                            close=True)
        if header is not None and await self._checked(web, header):
            return None
        return Response(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", headers=(
            *web.headers, ("WWW-Authenticate", f'Basic realm="{REALM}"')))

    async def _answer(self, request: Request) -> Response:
        response = await self._route(request)
        return replace(response, headers=(*self._endpoints.web().headers, *response.headers))

    async def _checked(self, web: WebConfig, header: str) -> bool:
        self._checks += 1
        try:
            return await self._off_loop("auth", web.authenticate, header)
        finally:
            self._checks -= 1

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method in ("POST", "PUT"):  # PUT as Prometheus accepts it too
            if path != "/-/reload":
                return _text(HTTPStatus.METHOD_NOT_ALLOWED, "only /-/reload takes POST")
            return _reloaded(await self._reload())
        if method not in ("GET", "HEAD"):
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not served")
        if path == "/metrics":
            gzipped = "gzip" in (request.header("accept-encoding") or "")
            return await self._off_loop("handler", self._metrics, gzipped)
        slow = {"/": lambda: _landing(self._endpoints.status)}  # off the event loop
        if (ledgers := self._endpoints.ledgers) is not None:
            slow["/-/ledgers"] = lambda: Response(HTTPStatus.OK, self._ledgers.get(ledgers),
                                                  "application/json")
        if path in slow:
            return await self._off_loop("handler", slow[path])
        pages: dict[str, Callable[[], Response]] = {
            "/-/healthy": self._healthy, "/-/ready": self._ready,
            "/-/reload": lambda: _text(HTTPStatus.METHOD_NOT_ALLOWED, "use POST")}
        page = pages.get(path)
        return page() if page else _text(HTTPStatus.NOT_FOUND, "404 page not found")

    async def _off_loop(self, pool: str, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pools[pool], work, *args)

    def _metrics(self, gzipped: bool) -> Response:
        own = generate_latest(self._endpoints.registry)
        # A gzip stream may hold several members; the cached member is made once per cycle.
        tail = gzip.compress(own, 1, mtime=0) if gzipped else own
        extra = (("Content-Encoding", "gzip"),) if gzipped else ()
        return Response(HTTPStatus.OK, self._endpoints.cache.body(gzipped), CONTENT_TYPE, extra,
                        tail=tail)

    async def _reload(self) -> str | None:
        """Run the reload hook on the reload thread. A reload waits for the poll cycle in
        flight; a pool's thread would be joined at exit, so a stop during a long cycle
        waited for it (issue #26); this one is a daemon."""
        return await asyncio.wrap_future(self._reloads.submit(self._endpoints.reload))

    def _healthy(self) -> Response:
        if self._endpoints.healthy():
            return _text(HTTPStatus.OK, "Healthy.")
        return _text(HTTPStatus.SERVICE_UNAVAILABLE,
                     "Unhealthy: no poll cycle has finished for too long.")

    def _ready(self) -> Response:
        if self._endpoints.ready.is_set():
            return _text(HTTPStatus.OK, "Ready.")
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready: the first poll is running.")


class _Recent:
    """A value made at most once per ``seconds``: callers in between get the last one, and
    one caller makes it while the others wait for it (never two at once)."""

    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self._seconds, self._monotonic = seconds, monotonic
        self._lock = threading.Lock()
        self._value: bytes | None = None
        self._made = 0.0

    def get(self, make: Callable[[], bytes]) -> bytes:
        """The value, made by ``make`` if the last one is older than ``seconds``."""
        with self._lock:
            now = self._monotonic()
            if self._value is None or now - self._made >= self._seconds:
                self._value, self._made = make(), now
            return self._value


class _DaemonWorker:
    """One daemon thread running what is submitted, in order (started on first use). Unlike a
    ThreadPoolExecutor's, its thread is not joined at interpreter exit."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], str | None],
                                             Future[str | None]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], str | None]) -> Future[str | None]:
        """``work()``'s outcome, once the thread has run it."""
        future: Future[str | None] = Future()
        self._queue.put((work, future))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            work, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except Exception as error:  # noqa: BLE001 (the waiting request answers it)
                future.set_exception(error)


def _reloaded(problem: str | None) -> Response:
    if problem is None:
        return _text(HTTPStatus.OK, "config reloaded")
    return _text(HTTPStatus.INTERNAL_SERVER_ERROR, f"reload failed: {problem}")


def _landing(status: Callable[[], str]) -> Response:
    links = "".join(f'<li><a href="{p}">{html.escape(p)}</a></li>'
                    for p in ("/metrics", "/-/healthy", "/-/ready"))
    page = (f"<!DOCTYPE html><html><head><title>uminfer-exporter</title></head><body>"
            f"<h1>uminfer-exporter {html.escape(__version__)}</h1>"
            f"<p>Prometheus exporter for LLM token usage (GetUMInferTokenUsage).</p>"
            f"<h2>Now</h2>{status()}"
            f"<ul>{links}</ul><p>POST /-/reload reloads the configuration.</p></body></html>")
    return Response(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")


def _text(status: HTTPStatus, text: str) -> Response:
    return Response(status, f"{text}\n".encode())


def probe_from_this_host(request: Request) -> bool:
    """A health or readiness probe from loopback: it needs no password (but TLS, if on).

    The image's HEALTHCHECK and the Kubernetes exec probes run beside the exporter and hold
    no password (the web config has only hashes); the answers carry nothing but "Healthy.".
    """
    return request.path in PROBES and _loopback(request.peer)


def _loopback(peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
