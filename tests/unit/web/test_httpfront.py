"""The HTTP front in process, over raw loopback sockets: framing, deadlines and the cap."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bcrypt
import pytest

from exporter.web.config import WebConfig
from exporter.web.httpfront import HttpFront, Limits, _Conn
from exporter.web.httpwire import RequestError, parse_head
from tests.sockets import OPEN, read_until_closed
from tests.unit.web.test_server import Reloads, serving

# Each test takes a second or two: one that loops forever (a mutant's doing, under mutation
# testing) fails here instead of holding the run until mutmut's own limit.
pytestmark = pytest.mark.timeout(30)

QUICK = Limits(max_connections=8, header_timeout=1.0, idle_timeout=1.0, write_timeout=1.0)


@pytest.fixture
def front() -> Iterator[tuple[int, Reloads]]:
    reloads = Reloads()
    with serving(reloads, limits=QUICK) as (url, _):
        yield int(url.rsplit(":", 1)[1]), reloads


def exchange(port: int, raw: bytes, wait: float = 3.0) -> bytes:
    """Send ``raw`` and read until the server closes (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(raw)
        return read_all(sock, wait)


def read_all(sock: socket.socket, wait: float) -> bytes:
    return read_until_closed(sock, wait)


def read_until(sock: socket.socket, suffix: bytes) -> bytes:
    """Read until what came ends with ``suffix``; the connection's end first fails the test."""
    got = b""
    while not got.endswith(suffix):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]



def trickled_until_closed(sock: socket.socket, data: bytes, pause: float) -> float | None:
    """Send ``data`` a byte at a time, ``pause`` apart, until the server closes the connection;
    the monotonic time it did, or None if it never did."""
    sock.setblocking(False)
    try:
        for byte in data:
            try:
                sock.send(bytes([byte]))
                time.sleep(pause)
                if sock.recv(1) == b"":
                    return time.monotonic()
            except BlockingIOError:
                pass
            except OSError:
                return time.monotonic()
        return None
    finally:
        sock.setblocking(True)

def test_a_body_is_dropped_never_read_as_a_request(front: tuple[int, Reloads]) -> None:
    port, reloads = front
    smuggled = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    raw = (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
           + smuggled + b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = exchange(port, raw)
    assert statuses(answer) == [200, 200]
    assert answer.endswith(b"Healthy.\n")
    assert reloads.calls == []


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),  # not int()ed
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 17 * 1024 + b"\r\n\r\n", 431),  # over 16 KiB at once
    (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
], ids=["chunked", "two-lengths", "signed-length", "space-before-colon", "folded", "too-long",
        "huge-length", "huge-head", "absolute-uri", "http2"])
def test_ambiguous_framing_is_refused_and_the_connection_closed(
        front: tuple[int, Reloads], head: bytes, status: int) -> None:
    port, reloads = front
    chunks = b"1a\r\nPOST /-/reload HTTP/1.1\r\n\r\n0\r\n\r\n"
    answer = exchange(port, head + chunks)
    assert statuses(answer) == [status]
    assert not answer.endswith(OPEN)
    assert reloads.calls == []


def test_tls_to_the_plain_port_is_refused_at_once(front: tuple[int, Reloads]) -> None:
    port, _ = front
    began = time.monotonic()
    answer = exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # ClientHello
    assert statuses(answer) == [400]
    assert time.monotonic() - began < 0.5  # not the header deadline


def test_keep_alive_and_pipelining_still_work(front: tuple[int, Reloads]) -> None:
    port, _ = front
    one = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = exchange(port, one + one + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert statuses(answer) == [200, 200, 200]


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_deadline(
        front: tuple[int, Reloads]) -> None:
    port, _ = front
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        closed_at = trickled_until_closed(sock, b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100, 0.1)
    assert closed_at is not None
    assert 0.9 <= closed_at - began <= 2.0


def test_an_idle_kept_alive_connection_is_closed(front: tuple[int, Reloads]) -> None:
    port, _ = front
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\n\r\n")
        began = time.monotonic()
        answer = read_all(sock, 3)
    assert statuses(answer) == [200]
    assert not answer.endswith(OPEN)
    assert 0.9 <= time.monotonic() - began <= 2.0


def test_a_reader_that_does_not_read_is_cut_at_the_write_deadline() -> None:
    big = Limits(write_timeout=1.0)
    with serving(Reloads(), limits=big, body=b"x" * 20_000_000) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            time.sleep(2.0)  # read nothing past the deadline
            received = len(read_all(sock, 3))
        assert received < 20_000_000  # cut, not delivered in full
        assert exchange(port, b"GET /-/healthy HTTP/1.0\r\n\r\n").endswith(b"Healthy.\n")


def test_at_the_cap_the_longest_waiting_connection_makes_room(front: tuple[int, Reloads]) -> None:
    port, _ = front
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5)
              for _ in range(QUICK.max_connections)]
    try:
        time.sleep(0.2)
        answer = exchange(port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
        assert answer.endswith(b"Healthy.\n")
        assert read_all(silent[0], 0.5) == b""  # the oldest was closed
        assert read_all(silent[-1], 0.2) == OPEN
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nX: a\rb\r\n", b"GET  / HTTP/1.1",
                                  b"G\x00T / HTTP/1.1", b""],
                         ids=["bare-cr", "double-space", "nul", "empty"])
def test_parse_head_refuses_malformed_heads(head: bytes) -> None:
    with pytest.raises(RequestError):
        parse_head(head)


def test_at_the_cap_an_idle_kept_alive_connection_makes_room(front: tuple[int, Reloads]) -> None:
    port, _ = front
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(QUICK.max_connections)]
    try:
        for sock in idle:
            sock.sendall(b"GET /-/healthy HTTP/1.1\r\n\r\n")
            answer = read_until(sock, b"Healthy.\n")
            assert answer.startswith(b"HTTP/1.1 200")  # and kept alive
        began = time.monotonic()
        answer = exchange(port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
        assert answer.endswith(b"Healthy.\n")
        assert time.monotonic() - began < 0.5  # not after the 1 s idle deadline
        assert read_all(idle[0], 0.5) == b""  # the longest idle one was closed
    finally:
        for sock in idle:
            sock.close()


@dataclass
class HeldReloads(Reloads):
    """A reload hook that does not return until released (a reload waits for a poll cycle)."""

    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self) -> str | None:
        self.release.wait(10)
        return super().__call__()


@contextmanager
def every_slot_answering(reloads: HeldReloads) -> Iterator[int]:
    """A front at QUICK's cap whose every connection is being answered (a reload held until
    ``reloads.release``); its port."""
    with serving(reloads, limits=QUICK) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        busy = [socket.create_connection(("127.0.0.1", port), timeout=5)
                for _ in range(QUICK.max_connections)]
        try:
            for sock in busy:
                sock.sendall(b"POST /-/reload HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            yield port
        finally:
            reloads.release.set()
            for sock in busy:
                sock.close()


def test_when_every_connection_is_being_answered_new_ones_wait_in_the_backlog() -> None:
    reloads = HeldReloads()
    with every_slot_answering(reloads) as port:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as late:
            late.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
            assert read_all(late, 0.5) == OPEN  # queued, neither served nor cut
            reloads.release.set()
            assert read_all(late, 3).endswith(b"Healthy.\n")
    assert len(reloads.calls) == QUICK.max_connections


def resident_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_slow_readers_of_a_big_answer_share_it_not_copy_it() -> None:
    """Twenty clients that never read a 20 MB /metrics must not cost twenty copies of it."""
    body = b"x" * 20_000_000
    with serving(Reloads(), limits=Limits(write_timeout=5.0), body=body) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        before = resident_mib()
        readers = []
        try:
            for _ in range(20):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                readers.append(sock)
            time.sleep(1.0)  # every answer is being written, none is read
            grown = resident_mib() - before
        finally:
            for sock in readers:
                sock.close()
    assert grown < 100, f"resident memory grew by {grown:.0f} MiB (a copy each: 400 MiB)"


def test_the_accept_loop_sleeps_while_no_connection_can_be_admitted() -> None:
    """Every slot being answered and one more client queued: the loop waits, it does not spin
    on the readable listen socket (issue #26, N1: a whole core)."""
    reloads = HeldReloads()
    with every_slot_answering(reloads) as port:
        time.sleep(0.3)  # every slot's request read and being answered before the late one
        late = socket.create_connection(("127.0.0.1", port), timeout=5)
        late.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        began, cpu = time.monotonic(), time.process_time()
        time.sleep(1.0)  # only waiting, on both sides
        share = (time.process_time() - cpu) / (time.monotonic() - began)
        reloads.release.set()
        with late:
            assert read_all(late, 3).endswith(b"Healthy.\n")
    assert share < 0.10, f"{share:.0%} of a core while waiting"


def test_a_body_that_does_not_come_is_cut_at_the_body_deadline() -> None:
    reloads = Reloads()
    with serving(reloads, limits=Limits(header_timeout=10.0, body_timeout=0.5)) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /-/reload HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            began = time.monotonic()
            answer = read_all(sock, 3)
            took = time.monotonic() - began
    assert answer == b""  # cut, not answered
    assert 0.4 <= took < 1.5, f"{took:.2f}s (the header deadline is 10 s)"
    assert reloads.calls == []


def test_a_head_refused_by_auth_is_answered_without_awaiting_its_body() -> None:
    """No password, and a body announced but not sent (issue #26, N2): 401 at once, closed."""
    secret = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    with serving(Reloads(), web=WebConfig(users=(("prom", secret),)), limits=QUICK) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        began = time.monotonic()
        answer = exchange(port, b"GET /-/ledgers HTTP/1.1\r\nContent-Length: 60000\r\n\r\n")
        took = time.monotonic() - began
    assert statuses(answer) == [401]
    assert not answer.endswith(OPEN)
    assert took < 0.5, f"{took:.2f}s: the body was awaited first"


def test_at_the_cap_a_head_whose_body_does_not_come_makes_room() -> None:
    """Every slot held by a head announcing a body it does not send, each head already in the
    kernel when accepted: such a connection waits on its client, so a new one is admitted at
    once (before, none could be closed for room until its deadline)."""
    reloads = HeldReloads()
    with serving(reloads, limits=QUICK) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        busy = [socket.create_connection(("127.0.0.1", port), timeout=5)
                for _ in range(QUICK.max_connections)]
        pending = []
        try:
            for sock in busy:
                sock.sendall(b"POST /-/reload HTTP/1.1\r\nConnection: close\r\n\r\n")
            time.sleep(0.2)
            for _ in range(QUICK.max_connections):  # queued in the backlog, heads sent
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /-/healthy HTTP/1.1\r\nContent-Length: 60000\r\n\r\n")
                pending.append(sock)
            time.sleep(0.1)
            reloads.release.set()  # the busy ones finish; the pending ones take their slots
            time.sleep(0.2)
            began = time.monotonic()
            answer = exchange(port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
            took = time.monotonic() - began
            assert answer.endswith(b"Healthy.\n")
            assert took < 0.5, f"{took:.2f}s"
            assert sum(read_all(sock, 0.05) == b"" for sock in pending) >= 1  # made room
        finally:
            reloads.release.set()
            for sock in busy + pending:
                sock.close()


def test_a_kept_alive_connection_has_the_head_deadline_for_its_next_request() -> None:
    """Idle between requests may last ``idle_timeout``; once the next request's first byte is
    in, its head has ``header_timeout``, as a new connection's has: a trickled second head is
    cut at that deadline, not allowed the idle timeout."""
    limits = Limits(max_connections=8, header_timeout=0.5, idle_timeout=5.0, write_timeout=1.0)
    with serving(Reloads(), limits=limits) as (url, _), socket.create_connection(
            ("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as sock:
        request = b"GET /-/healthy HTTP/1.1\r\n\r\n"
        for _ in range(2):  # the second after the first request's own head deadline
            sock.sendall(request)
            answer = read_until(sock, b"Healthy.\n")
            assert statuses(answer) == [200]
            time.sleep(0.7)  # idle: longer than a head may take, shorter than idle_timeout
        began = time.monotonic()
        closed_at = trickled_until_closed(sock, b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 60, 0.05)
    assert closed_at is not None, "still open after 3 s of trickling"
    assert 0.4 <= closed_at - began <= 1.5, f"{closed_at - began:.2f}s"


def test_at_the_cap_a_connection_whose_request_has_just_arrived_is_not_closed_for_room(
        ) -> None:
    """The window is one slice of the accept loop (a connection admitted while waiting, whose
    task has not started when its request arrives); it is driven here step by step, on a
    front whose loop does not run, so nothing else moves meanwhile."""
    async def never(_request: object) -> object:
        raise AssertionError("no request is answered here")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        front = HttpFront(listener, never, lambda: None,  # type: ignore[arg-type]
                          Limits(max_connections=2), "test")
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.1)
            first: list[_Conn] = []
            assert front._accept_some(100, first) == "drained"
            assert len(first) == 2  # both admitted, both waiting on their clients
            arrived, silent = clients
            arrived.sendall(b"GET /-/healthy HTTP/1.1\r\n\r\n")
            time.sleep(0.1)
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.1)
            second: list[_Conn] = []
            front._accept_some(100, second)
            assert len(second) == 1  # the newcomer got a slot ...
            assert read_all(silent, 0.5) == b""  # ... the silent one's
            assert read_all(arrived, 0.3) == OPEN  # not the one about to be served
        finally:
            for sock in clients:
                sock.close()
            for conn in list(front._conns):
                conn.sock.close()
            front.loop.close()
