"""The HTTP server in process, with a fresh registry and hand-made endpoints."""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from exporter import __version__
from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config import Target
from exporter.metrics.exposition import CONTENT_TYPE, ExpositionCache
from exporter.web import server as server_module
from exporter.web.config import WebConfig
from exporter.web.httpfront import Limits
from exporter.web.httpwire import Request
from exporter.web.server import (
    HANDLER_THREADS,
    LEDGERS_SECONDS,
    MAX_QUEUED_CHECKS,
    Endpoints,
    MetricsServer,
    _DaemonWorker,
    _Recent,
    probe_from_this_host,
)
from tests.certs import make_pki


@dataclass
class Reloads:
    """A reload hook that answers what it is told and counts its calls."""

    answer: str | None = None
    calls: list[None] = field(default_factory=list)

    def __call__(self) -> str | None:
        self.calls.append(None)
        return self.answer


class FixedBody(ExpositionCache):
    """An exposition cache whose body is given bytes (to make a big answer cheaply)."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._fixed = body

    def body(self, compressed: bool) -> bytes:
        return self._fixed


@contextmanager
def serving(reloads: Reloads, ready: bool = True, web: WebConfig | None = None,
            limits: Limits | None = None, body: bytes | None = None, **parts: Any
            ) -> Iterator[tuple[str, Endpoints]]:
    registry = CollectorRegistry()
    Gauge("own_metric", "A self-metric.", registry=registry).set(7)
    cache = ExpositionCache() if body is None else FixedBody(body)
    cache.publish(Snapshot((TargetSnapshot(Target("k", "m", "p"), up=True),)))
    event = threading.Event()
    if ready:
        event.set()

    chosen = web or WebConfig(headers=(("X-Frame-Options", "deny"),))
    endpoints = Endpoints(cache=cache, registry=registry, ready=event, reload=reloads,
                          web=lambda: chosen, **parts)
    server = MetricsServer("127.0.0.1", 0, endpoints, limits)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", endpoints
    finally:
        server.close()


def test_metrics_joins_the_cached_body_and_the_registry() -> None:
    with serving(Reloads()) as (url, _):
        plain = requests.get(f"{url}/metrics", timeout=5)
        zipped = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"},
                              stream=True, timeout=5)
        raw = zipped.raw.read()
    assert plain.status_code == 200
    assert 'uminfer_up{project_id="p",key_id="k",model="m"} 1' in plain.text
    assert "own_metric 7.0" in plain.text
    assert plain.headers["X-Frame-Options"] == "deny"
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw).decode() == plain.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/-/healthy", 200), ("GET", "/", 200), ("HEAD", "/metrics", 200),
    ("GET", "/nope", 404), ("GET", "/-/reload", 405), ("POST", "/metrics", 405),
])
def test_routes(method: str, path: str, status: int) -> None:
    reloads = Reloads()
    with serving(reloads) as (url, _):
        response = requests.request(method, url + path, timeout=5)
    assert response.status_code == status
    assert reloads.calls == []


def test_ready_only_after_the_first_cycle() -> None:
    with serving(Reloads(), ready=False) as (url, endpoints):
        assert requests.get(f"{url}/-/ready", timeout=5).status_code == 503
        endpoints.ready.set()
        assert requests.get(f"{url}/-/ready", timeout=5).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_reload_reports_success_and_failure(method: str) -> None:
    reloads = Reloads()
    with serving(reloads) as (url, _):
        ok = requests.request(method, f"{url}/-/reload", timeout=5)
        reloads.answer = "targets: at least one target is required"
        refused = requests.request(method, f"{url}/-/reload", timeout=5)
    assert (ok.status_code, ok.text) == (200, "config reloaded\n")
    assert refused.status_code == 500
    assert refused.text == "reload failed: targets: at least one target is required\n"
    assert len(reloads.calls) == 2


def test_unauthorized_requests_reach_nothing() -> None:
    reloads = Reloads()
    locked = WebConfig(users=(("u", "$2b$04$" + "." * 53),))
    with serving(reloads, web=locked) as (url, _):
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        assert requests.post(f"{url}/-/reload", timeout=5).status_code == 401
    assert reloads.calls == []


def test_landing_page_links_every_endpoint() -> None:
    with serving(Reloads()) as (url, _):
        page = requests.get(url, timeout=5).text
    for path in ("/metrics", "/-/healthy", "/-/ready"):
        assert f'href="{path}"' in page
    assert "/-/reload" in page


@pytest.mark.parametrize(("path", "peer", "exempt"), [
    ("/-/healthy", "127.0.0.1", True), ("/-/ready", "::1", True),
    ("/-/ready", "::ffff:127.0.0.1", True), ("/-/healthy", "127.3.4.5", True),
    ("/-/healthy", "192.0.2.7", False), ("/-/ready", "::ffff:192.0.2.7", False),
    ("/metrics", "127.0.0.1", False), ("/", "127.0.0.1", False), ("/-/healthy", "", False),
])
def test_only_local_probes_skip_the_password(path: str, peer: str, exempt: bool) -> None:
    assert probe_from_this_host(Request("GET", path, "HTTP/1.1", peer=peer)) is exempt


def slow_wrong_passwords() -> WebConfig:
    """User ``u`` whose password ``right`` checks at once and any other in 0.5 s of bcrypt."""
    def slow_checker(password: bytes, _stored: bytes) -> bool:
        if password == b"right":
            return True
        time.sleep(0.5)
        return False

    return WebConfig(users=(("u", "$2b$04$" + "." * 53),), checker=slow_checker)


def test_wrong_passwords_never_delay_a_scraper_that_passed_lately() -> None:
    """bcrypt runs on its own small pool; a known scraper is answered from the cache."""
    web = slow_wrong_passwords()
    with serving(Reloads(), web=web) as (url, _):
        assert requests.get(f"{url}/metrics", auth=("u", "right"), timeout=5).status_code == 200
        wrong = [threading.Thread(target=requests.get, args=(f"{url}/metrics",),
                                  kwargs={"auth": ("u", f"wrong{i}"), "timeout": 10})
                 for i in range(8)]  # 4 s of bcrypt on 2 threads
        for thread in wrong:
            thread.start()
        time.sleep(0.2)
        began = time.monotonic()
        assert requests.get(f"{url}/metrics", auth=("u", "right"), timeout=5).status_code == 200
        assert time.monotonic() - began < 0.3
        for thread in wrong:
            thread.join()


def test_wrong_passwords_beyond_the_check_queue_are_refused_at_once() -> None:
    """A stream of wrong passwords queues at most MAX_QUEUED_CHECKS bcrypt runs; more get 503
    at once, and so does a new scraper while the queue is full: told to retry, not kept waiting
    (before: 40 wrong passwords at 0.5 s each on 2 threads queued 10 s). The wrong checks hold
    until released, so the queue is full for sure however loaded the machine is."""
    released = threading.Event()

    def held_checker(password: bytes, _stored: bytes) -> bool:
        if password == b"right":
            return True
        if password.startswith(b"held"):
            released.wait(15)
        return False

    web = WebConfig(headers=(("X-Frame-Options", "deny"),), users=(("u", "$2b$04$" + "." * 53),),
                    checker=held_checker)
    statuses: list[int] = []
    with serving(Reloads(), web=web) as (url, _):
        # Checks that finished leave the queue as they found it.
        assert [requests.get(f"{url}/metrics", auth=("u", "quick"), timeout=5).status_code
                for _ in range(3)] == [401] * 3

        def wrong(i: int) -> None:
            statuses.append(requests.get(f"{url}/metrics", auth=("u", f"held{i}"),
                                         timeout=20).status_code)

        threads = [threading.Thread(target=wrong, args=(i,)) for i in range(40)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 15
        while statuses.count(503) < 40 - MAX_QUEUED_CHECKS and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        refused = requests.get(f"{url}/metrics", auth=("u", "right"), timeout=15)
        took = time.monotonic() - began
        released.set()
        for thread in threads:
            thread.join()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Connection"] == "close"
    assert refused.headers["X-Frame-Options"] == "deny"
    assert refused.text == "Too many password checks waiting; try again.\n"
    assert took < 0.5, f"{took:.2f}s"
    assert (statuses.count(401), statuses.count(503)) == (MAX_QUEUED_CHECKS,
                                                          40 - MAX_QUEUED_CHECKS)


def test_listening_on_every_ipv6_address_serves_ipv4_too() -> None:
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 here")
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=Reloads())
    server = MetricsServer("::", 0, endpoints)
    server.start()
    try:
        for host in ("127.0.0.1", "[::1]"):
            assert requests.get(f"http://{host}:{server.port}/-/healthy", timeout=5).ok
    finally:
        server.close()


def test_ledgers_are_made_at_most_once_per_interval_however_often_asked() -> None:
    """/-/ledgers costs the poller's lock and 0.4 s of CPU at 10,000 targets: a client asking
    in a loop must not make it each time (issue #26)."""
    made: list[float] = []

    def document() -> bytes:
        made.append(time.monotonic())
        time.sleep(0.05)
        return b'{"kind": "uminfer-settled-ledgers"}'

    registry = CollectorRegistry()
    cache = ExpositionCache()
    cache.publish(Snapshot(()))
    ready = threading.Event()
    ready.set()
    endpoints = Endpoints(cache=cache, registry=registry, ready=ready, reload=Reloads(),
                          ledgers=document)
    server = MetricsServer("127.0.0.1", 0, endpoints)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/-/ledgers"
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(requests.get(url, timeout=5)))
                   for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.close()
    assert [a.status_code for a in answers] == [200] * 20
    assert all(a.content == b'{"kind": "uminfer-settled-ledgers"}' for a in answers)
    assert len(made) == 1


PLAIN = "text/plain; charset=utf-8"


@pytest.mark.parametrize(("method", "path", "status", "text"), [
    ("GET", "/-/healthy", 200, "Healthy.\n"), ("GET", "/-/ready", 200, "Ready.\n"),
    ("GET", "/nope", 404, "404 page not found\n"), ("GET", "/-/ledgers", 404,
                                                    "404 page not found\n"),
    ("GET", "/-/reload", 405, "use POST\n"), ("POST", "/metrics", 405,
                                              "only /-/reload takes POST\n"),
    ("PUT", "/", 405, "only /-/reload takes POST\n"),
    ("DELETE", "/metrics", 405, "DELETE is not served\n"),
    ("OPTIONS", "/-/reload", 405, "OPTIONS is not served\n"),
])
def test_each_route_answers_its_own_words(method: str, path: str, status: int,
                                          text: str) -> None:
    reloads = Reloads()
    with serving(reloads) as (url, _):
        response = requests.request(method, url + path, timeout=5)
    assert (response.status_code, response.text) == (status, text)
    assert response.headers["Content-Type"] == PLAIN
    assert response.headers["Server"] == f"uminfer-exporter/{__version__}"
    assert response.headers["X-Frame-Options"] == "deny"
    assert reloads.calls == []


def test_unhealthy_and_not_ready_say_why() -> None:
    with serving(Reloads(), ready=False, healthy=lambda: False) as (url, _):
        sick = requests.get(f"{url}/-/healthy", timeout=5)
        waiting = requests.get(f"{url}/-/ready", timeout=5)
    assert (sick.status_code, sick.text) == (
        503, "Unhealthy: no poll cycle has finished for too long.\n")
    assert (waiting.status_code, waiting.text) == (503, "Not ready: the first poll is running.\n")


def test_metrics_is_the_exposition_with_gzip_only_when_asked() -> None:
    with serving(Reloads()) as (url, _):
        plain = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"},
                             timeout=5)
        zipped = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "deflate, gzip"},
                              stream=True, timeout=5)
        raw = zipped.raw.read()
        head = requests.head(f"{url}/metrics", headers={"Accept-Encoding": "identity"},
                             timeout=5)
    assert plain.headers["Content-Type"] == CONTENT_TYPE
    assert "Content-Encoding" not in plain.headers
    assert plain.text.endswith("own_metric 7.0\n")
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw).decode() == plain.text
    assert (head.content, head.headers["Content-Length"]) == (
        b"", str(len(plain.content)))


def test_the_landing_page_tells_what_runs_now() -> None:
    with serving(Reloads(), status=lambda: "<p>all <b>fine</b></p>") as (url, _):
        page = requests.get(f"{url}/", timeout=5)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.text == (
        "<!DOCTYPE html><html><head><title>uminfer-exporter</title></head><body>"
        f"<h1>uminfer-exporter {__version__}</h1>"
        "<p>Prometheus exporter for LLM token usage (GetUMInferTokenUsage).</p>"
        "<h2>Now</h2><p>all <b>fine</b></p>"
        '<ul><li><a href="/metrics">/metrics</a></li><li><a href="/-/healthy">/-/healthy</a>'
        '</li><li><a href="/-/ready">/-/ready</a></li></ul>'
        "<p>POST /-/reload reloads the configuration.</p></body></html>")


def test_ledgers_are_json_when_served() -> None:
    with serving(Reloads(), ledgers=lambda: b'{"a": 1}') as (url, _):
        answer = requests.get(f"{url}/-/ledgers", timeout=5)
    assert (answer.status_code, answer.content) == (200, b'{"a": 1}')
    assert answer.headers["Content-Type"] == "application/json"


def test_a_reload_that_raises_costs_one_answer_not_the_reload_thread() -> None:
    class Buggy(Reloads):
        def __call__(self) -> str | None:
            if not self.calls:
                self.calls.append(None)
                raise RuntimeError("a bug")
            return super().__call__()

    with serving(Buggy()) as (url, _):
        broken = requests.post(f"{url}/-/reload", timeout=5)
        fine = requests.post(f"{url}/-/reload", timeout=5)
    assert (broken.status_code, broken.text) == (500, "internal error\n")
    assert (fine.status_code, fine.text) == (200, "config reloaded\n")


def locked_web() -> WebConfig:
    return WebConfig(headers=(("X-Frame-Options", "deny"),),
                     users=(("u", bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()),))


def test_a_refused_request_is_told_how_to_authenticate() -> None:
    with serving(Reloads(), web=locked_web()) as (url, _):
        bare = requests.get(f"{url}/metrics", timeout=5)
        wrong = requests.get(f"{url}/metrics", auth=("u", "nope"), timeout=5)
        right = requests.get(f"{url}/metrics", auth=("u", "pw"), timeout=5)
        again = requests.get(f"{url}/metrics", auth=("u", "pw"), timeout=5)
    for refused in (bare, wrong):
        assert (refused.status_code, refused.text) == (401, "Unauthorized\n")
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="uminfer-exporter"'
        assert refused.headers["X-Frame-Options"] == "deny"
    assert (right.status_code, again.status_code) == (200, 200)


def test_probes_from_this_host_need_no_password_but_the_rest_does() -> None:
    with serving(Reloads(), web=locked_web()) as (url, _):
        healthy = requests.get(f"{url}/-/healthy", timeout=5)
        ready = requests.get(f"{url}/-/ready", timeout=5)
        landing = requests.get(f"{url}/", timeout=5)
    assert (healthy.status_code, healthy.text, ready.text) == (200, "Healthy.\n", "Ready.\n")
    assert landing.status_code == 401


def test_a_password_check_is_never_refused_for_a_queue_of_bare_requests() -> None:
    """Requests without credentials never reach bcrypt, so they never fill its queue."""
    with serving(Reloads(), web=locked_web()) as (url, _):
        bare = [requests.get(f"{url}/metrics", timeout=5).status_code
                for _ in range(MAX_QUEUED_CHECKS + 2)]
        right = requests.get(f"{url}/metrics", auth=("u", "pw"), timeout=5)
    assert bare == [401] * (MAX_QUEUED_CHECKS + 2)
    assert right.status_code == 200


@pytest.mark.parametrize(("peer", "exempt"), [
    ("::1%lo", True), ("fe80::1%eth0", False), ("::ffff:10.0.0.1", False), ("not an ip", False),
])
def test_probe_peers_with_zones_and_mapped_addresses(peer: str, exempt: bool) -> None:
    assert probe_from_this_host(Request("GET", "/-/healthy", "HTTP/1.1", peer=peer)) is exempt


def test_a_recent_value_is_made_again_once_it_is_as_old_as_its_interval() -> None:
    clock = [0.0]  # a monotonic clock may start at 0
    made: list[float] = []

    def make() -> bytes:
        made.append(clock[0])
        return b"%d" % len(made)

    recent = _Recent(5.0, lambda: clock[0])
    assert recent.get(make) == b"1"
    clock[0] = 4.9
    assert recent.get(make) == b"1"
    clock[0] = 5.0
    assert recent.get(make) == b"2"
    assert made == [0.0, 5.0]
    assert LEDGERS_SECONDS == 5.0


def test_the_daemon_worker_runs_in_order_on_one_daemon_thread() -> None:
    worker = _DaemonWorker("test-worker")
    threads: list[threading.Thread] = []

    def work() -> str | None:
        threads.append(threading.current_thread())
        return f"done {len(threads)}"

    def broken() -> str | None:
        raise ValueError("bug")

    first, failing, second = worker.submit(work), worker.submit(broken), worker.submit(work)
    assert (first.result(5), second.result(5)) == ("done 1", "done 2")
    assert isinstance(failing.exception(5), ValueError)
    assert threads[0] is threads[1]
    assert (threads[0].name, threads[0].daemon) == ("test-worker", True)


def test_a_cancelled_submission_is_skipped() -> None:
    worker = _DaemonWorker("test-worker")
    gate = threading.Event()
    ran: list[str] = []

    def hold() -> str | None:
        gate.wait(5)
        return None

    def note(name: str) -> Callable[[], str | None]:
        def work() -> str | None:
            ran.append(name)
            return name
        return work

    held = worker.submit(hold)
    skipped = worker.submit(note("skipped"))
    assert skipped.cancel()
    gate.set()
    assert worker.submit(note("after")).result(5) == "after"
    assert held.result(5) is None
    assert ran == ["after"]


def test_an_ipv6_address_is_served_over_ipv6() -> None:
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=Reloads())
    try:
        server = MetricsServer("::1", 0, endpoints)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.start()
    try:
        assert requests.get(f"http://[::1]:{server.port}/-/healthy", timeout=5).text == \
            "Healthy.\n"
    finally:
        server.close()


def test_a_front_that_cannot_be_built_leaves_the_port_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[int] = []

    def broken(sock: socket.socket, *_args: object, **_kwargs: object) -> None:
        bound.append(sock.getsockname()[1])
        raise OSError("no event loop")

    monkeypatch.setattr(server_module, "HttpFront", broken)
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=Reloads())
    with pytest.raises(OSError, match="no event loop"):
        MetricsServer("127.0.0.1", 0, endpoints)
    with socket.create_server(("127.0.0.1", bound[0])):  # OSError if still bound
        pass


def test_each_kind_of_work_runs_on_its_own_named_pool() -> None:
    """Landing pages on the HANDLER_THREADS handler threads (never more at once), password
    checks on the auth threads, reloads on the reload thread; close() does not wait for a
    page being made, and drops those still queued."""
    gate, names, running, most = threading.Event(), [], [0], [0]
    lock = threading.Lock()

    def status() -> str:
        with lock:
            names.append(threading.current_thread().name)
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1
        return ""

    def checker(_password: bytes, _stored: bytes) -> bool:
        names.append(threading.current_thread().name)
        return False

    class Named(Reloads):
        def __call__(self) -> str | None:
            names.append(threading.current_thread().name)
            return None

    web = WebConfig(users=(("u", "$2b$04$" + "." * 53),), checker=checker)
    with serving(Named(), web=web) as (url, _):
        assert requests.get(f"{url}/metrics", auth=("u", "x"), timeout=5).status_code == 401
        assert requests.post(f"{url}/-/reload", auth=("u", "y"), timeout=5).status_code == 401
    assert [n.rsplit("_", 1)[0] for n in names] == ["http-auth", "http-auth"]
    names.clear()
    with serving(Named()) as (url, _):
        assert requests.post(f"{url}/-/reload", timeout=5).status_code == 200
    assert names == ["http-reload"]
    names.clear()
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=Reloads(), status=status)
    server = MetricsServer("127.0.0.1", 0, endpoints)
    server.start()

    def page() -> None:
        with contextlib.suppress(requests.RequestException):  # cut by close(): expected
            requests.get(f"http://127.0.0.1:{server.port}/", timeout=3)

    pages = [threading.Thread(target=page) for _ in range(HANDLER_THREADS + 2)]
    try:
        for thread in pages:
            thread.start()
        deadline = time.monotonic() + 5
        while len(names) < HANDLER_THREADS and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the two more stay queued
        assert (HANDLER_THREADS, most[0], len(names)) == (4, 4, 4)
        began = time.monotonic()
        server.close()
        assert time.monotonic() - began < 1.0  # not waiting for the pages being made
    finally:
        gate.set()
        for thread in pages:
            thread.join()
    time.sleep(0.1)
    assert len(names) == HANDLER_THREADS  # the queued ones were dropped, not run
    assert {n.rsplit("_", 1)[0] for n in names} == {"http-handler"}


def test_tls_from_the_web_config_is_served(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    endpoints = Endpoints(cache=ExpositionCache(), registry=CollectorRegistry(),
                          ready=threading.Event(), reload=Reloads(),
                          web=lambda: WebConfig(tls=context))
    server = MetricsServer("127.0.0.1", 0, endpoints)
    server.start()
    try:
        answer = requests.get(f"https://localhost:{server.port}/-/healthy", verify=str(pki.ca),
                              timeout=5)
    finally:
        server.close()
    assert answer.text == "Healthy.\n"
