"""The HTTP front's parts one at a time, without timing: the buffered wire, the kernel peek that
tells an arrived request, the peer's address, the defaults, and what the front logs (once)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar

import pytest

from exporter.web.httpfront import HttpFront, Limits, _Conn, _peer, _request_arrived, _Wire
from exporter.web.httpwire import Request, RequestError, Response
from tests.certs import make_pki
from tests.sockets import read_until_closed

# Each test takes a second or two: one that loops forever (a mutant's doing, under mutation
# testing) fails here instead of holding the run until mutmut's own limit.
pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


def on_wire(chunks: list[bytes], eof: bool,
            use: Callable[[_Wire], Awaitable[T]]) -> T:
    """``use`` a wire whose client sends ``chunks`` one read apart (then closes, if ``eof``)."""
    async def run() -> T:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        reader.feed_data(chunks[0])
        for delay, chunk in enumerate(chunks[1:], 1):
            loop.call_later(0.001 * delay, reader.feed_data, chunk)
        if eof:
            loop.call_later(0.001 * len(chunks), reader.feed_eof)
        return await use(_Wire(reader))

    return asyncio.run(run())


def head_of(chunks: list[bytes], limit: int = 1000, eof: bool = True) -> tuple[bytes | None, bytes]:
    async def use(wire: _Wire) -> tuple[bytes | None, bytes]:
        head = await wire.head(limit)
        return head, bytes(wire.buffer)

    return on_wire(chunks, eof, use)


def refused(chunks: list[bytes], limit: int = 1000) -> tuple[HTTPStatus, str]:
    with pytest.raises(RequestError) as raised:
        head_of(chunks, limit)
    return raised.value.status, raised.value.reason


def test_a_head_is_cut_at_its_blank_line_and_the_rest_kept() -> None:
    assert head_of([b"GET / HTTP/1.1\r\n", b"A: 1\r\n\r\nGET /next"]) == (
        b"GET / HTTP/1.1\r\nA: 1\r\n\r\n", b"GET /next")


def test_blank_lines_before_a_request_are_skipped() -> None:
    assert head_of([b"\r\n\n\r\nGET / HTTP/1.1\n\n"]) == (b"GET / HTTP/1.1\n\n", b"")
    assert head_of([b"\r\n", b"\n"]) == (None, b"")  # then a clean end
    assert head_of([b"\r", b"\nGET / HTTP/1.1\r\n\r\n"]) == (b"GET / HTTP/1.1\r\n\r\n", b"")
    assert head_of([b"\n", b"\r\nGET / HTTP/1.1\r\n\r\n"]) == (
        b"GET / HTTP/1.1\r\n\r\n", b"")


def test_a_clean_end_is_none_and_a_cut_head_an_incomplete_read() -> None:
    assert head_of([b""]) == (None, b"")
    with pytest.raises(asyncio.IncompleteReadError) as raised:
        head_of([b"GET / HT", b"TP/1.1\r\n"])
    assert raised.value.partial == b"GET / HTTP/1.1\r\n"


def test_not_http_is_refused_at_its_first_byte() -> None:
    assert refused([b"\x16\x03\x01"]) == (HTTPStatus.BAD_REQUEST, "not an HTTP request")


def test_a_head_may_fill_the_limit_but_not_pass_it() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 10 + b"\r\n\r\n"
    assert head_of([head], limit=len(head)) == (head, b"")
    assert head_of([head[:20], head[20:]], limit=len(head)) == (head, b"")
    assert refused([head], limit=len(head) - 1) == (
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
    assert refused([head[:-4], b"a" * 10], limit=len(head) - 4) == (
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
    assert head_of([head[:-4], b"\r\n\r\n"], limit=len(head)) == (head, b"")
    with pytest.raises(asyncio.IncompleteReadError):  # at the limit, then the client's end:
        head_of([head[:-4]], limit=len(head) - 4)  # it went away, nothing to refuse


def test_a_body_is_skipped_from_what_is_read_and_what_comes() -> None:
    async def skip(wire: _Wire) -> tuple[bool, bool, bytes]:
        await wire.head(1000)
        before = wire.holds(5), wire.holds(6)
        await wire.skip(5)
        after = bytes(wire.buffer)
        await wire.skip(6)
        return *before, after + bytes(wire.buffer)

    assert on_wire([b"POST / HTTP/1.1\r\n\r\nabcde", b"fghijkl"], True, skip) == (
        True, False, b"l")
    with pytest.raises(asyncio.IncompleteReadError):
        on_wire([b"abc"], True, lambda wire: wire.skip(4))


@contextmanager
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    server.setblocking(False)
    with client, server:
        yield client, server


@pytest.mark.parametrize(("sent", "arrived"), [
    (b"", False), (b"GET / HTTP/1.1\r\n", False), (b"GET / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\n\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcd", False),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", True),
], ids=["nothing", "half-head", "head", "bare-lf-head", "short-body", "whole-body"])
def test_a_request_has_arrived_with_its_whole_head_and_body(sent: bytes,
                                                            arrived: bool) -> None:
    with socket_pair() as (client, server):
        if sent:
            client.sendall(sent)
        assert _request_arrived(server) is arrived
        if sent:
            assert server.recv(4096) == sent  # only peeked


def test_the_peer_is_the_address_alone() -> None:
    assert _peer(("192.0.2.1", 5000)) == "192.0.2.1"
    assert _peer(("::1", 5000, 0, 0)) == "::1"
    assert _peer(()) == ""
    assert _peer("/run/sock") == ""


def test_the_documented_limits_and_a_deep_backlog() -> None:
    limits = Limits()
    assert (limits.max_connections, limits.header_timeout, limits.body_timeout,
            limits.idle_timeout, limits.write_timeout, limits.max_head_bytes,
            limits.max_body_bytes) == (512, 10.0, 2.0, 60.0, 30.0, 16384, 65536)
    assert limits.backlog == 4096
    assert Limits(max_connections=2048).backlog == 4096
    assert Limits(max_connections=2049).backlog == 4098


@contextmanager
def idle_front(app: Callable[[Request], Awaitable[Response]] | None = None
               ) -> Iterator[HttpFront]:
    async def ok(_request: Request) -> Response:
        return Response(HTTPStatus.OK)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        front = HttpFront(listener, app or ok, lambda: None, Limits(), "test")
        try:
            yield front
        finally:
            front.loop.close()


def test_the_front_logs_each_kind_of_trouble_once(caplog: pytest.LogCaptureFixture) -> None:
    with idle_front() as front, caplog.at_level(logging.WARNING, "exporter.web.httpfront"):
        front.once("accept", "accepting failed (%s)", "EMFILE")
        front.once("accept", "accepting failed (%s)", "EMFILE")
        front.once("other", "another %s", "thing")
    assert [r.getMessage() for r in caplog.records] == ["accepting failed (EMFILE)",
                                                        "another thing"]
    assert not any(r.exc_info for r in caplog.records)


def test_asyncio_reports_of_client_failures_are_not_news(
        caplog: pytest.LogCaptureFixture) -> None:
    with idle_front() as front, caplog.at_level(logging.WARNING, "exporter.web.httpfront"):
        front._loop_error(front.loop, {"message": "reset", "exception": ConnectionResetError()})
        front._loop_error(front.loop, {"message": "gone", "exception": asyncio.CancelledError()})
        front._loop_error(front.loop, {"message": "odd", "exception": KeyError("k")})
        front._loop_error(front.loop, {"message": "odd again", "exception": KeyError("j")})
        front._loop_error(front.loop, {"message": "no exception"})
    assert [r.getMessage() for r in caplog.records] == [
        "HTTP front: odd (KeyError('k'))", "HTTP front: no exception (None)"]


def test_a_route_that_raises_costs_one_answer_and_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> Response:
        if request.path == "/c":
            raise KeyError("another kind")
        raise ValueError(f"bug at {request.path}")

    with idle_front(broken) as front, caplog.at_level(logging.WARNING, "exporter.web.httpfront"):
        answers = [front.loop.run_until_complete(front._answer(Request("GET", path, "HTTP/1.1")))
                   for path in ("/a", "/b", "/c")]
    assert answers == [Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n",
                                close=True)] * 3
    first, other = caplog.records  # once per kind of error
    assert first.getMessage() == "answering /a failed: ValueError('bug at /a')"
    assert first.exc_info is not None and first.exc_info[0] is ValueError
    assert other.getMessage() == "answering /c failed: KeyError('another kind')"


@contextmanager
def running(app: Callable[[Request], Awaitable[Response]],
            admit: Callable[[Request], Awaitable[Response | None]] | None = None,
            tls: ssl.SSLContext | None = None) -> Iterator[HttpFront]:
    front = HttpFront(socket.create_server(("127.0.0.1", 0)), app, lambda: tls,
                      Limits(max_connections=8, header_timeout=2.0, idle_timeout=2.0,
                             write_timeout=2.0), "front/1", admit=admit)
    front.start()
    try:
        yield front
    finally:
        front.close()


async def echo(request: Request) -> Response:
    return Response(HTTPStatus.OK, f"{request.method} {request.peer}\n".encode())


def talk(port: int, raw: bytes, wait: float = 2.0) -> bytes:
    """Send ``raw``; read until the front closes (b"<open>" appended if it did not)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(raw)
        return read_until_closed(sock, wait)


def test_a_refused_head_is_answered_with_its_reason_and_closed() -> None:
    with running(echo) as front:
        answer = talk(front.port, b"GET / HTTP/2.0\r\n\r\n")
    assert answer == (b"HTTP/1.1 505 HTTP Version Not Supported\r\nServer: front/1\r\n"
                      b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n"
                      b"Connection: close\r\n\r\nonly HTTP/1.0 and 1.1\n")


def test_head_answers_carry_no_body_and_routes_see_the_peer() -> None:
    with running(echo) as front:
        answer = talk(front.port, b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n"
                                  b"Connection: close\r\n\r\n")
    head = (b"HTTP/1.1 200 OK\r\nServer: front/1\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n")
    assert answer == (head % len(b"HEAD 127.0.0.1\n") + b"\r\n"
                      + head % len(b"GET 127.0.0.1\n") + b"Connection: close\r\n\r\n"
                      b"GET 127.0.0.1\n")


def test_a_body_may_fill_max_body_bytes_but_not_pass_it() -> None:
    limit = Limits().max_body_bytes
    with running(echo) as front:
        fits = talk(front.port, b"POST / HTTP/1.1\r\nContent-Length: %d\r\nConnection: close"
                                b"\r\n\r\n" % limit + b"x" * limit)
        over = talk(front.port, b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (limit + 1))
    assert fits.endswith(b"\r\n\r\nPOST 127.0.0.1\n")
    assert over.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert over.endswith(b"Connection: close\r\n\r\nno endpoint takes a body\n")


def test_a_refused_head_keeps_the_connection_only_without_a_body() -> None:
    async def refuse_posts(request: Request) -> Response | None:
        return Response(HTTPStatus.UNAUTHORIZED, b"no\n") if request.method == "POST" else None

    with running(echo, admit=refuse_posts) as front:
        empty = talk(front.port, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                                 b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        body = talk(front.port, b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
                                b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert empty.count(b"HTTP/1.1 ") == 2 and empty.endswith(b"GET 127.0.0.1\n")
    assert body.count(b"HTTP/1.1 ") == 1 and body.endswith(b"Connection: close\r\n\r\nno\n")


def test_close_stops_the_loop_at_once_and_drops_every_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    """Idle, silent and mid-answer connections alike; every task ends with the loop, so
    nothing is left to be reported (a task destroyed pending, a loop left open)."""
    answering = threading.Event()

    async def slow(request: Request) -> Response:
        if request.path == "/slow":
            answering.set()
            await asyncio.sleep(30)
        return await echo(request)

    front = HttpFront(socket.create_server(("127.0.0.1", 0)), slow, lambda: None, Limits(),
                      "front/1")
    front.start()
    assert front._thread.daemon  # a front left open never holds the process at its exit
    with caplog.at_level(logging.DEBUG), socket.create_connection(
            ("127.0.0.1", front.port), timeout=2) as idle, socket.create_connection(
            ("127.0.0.1", front.port), timeout=2) as silent, socket.create_connection(
            ("127.0.0.1", front.port), timeout=2) as busy:
        idle.sendall(b"GET / HTTP/1.1\r\n\r\n")
        busy.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"GET 127.0.0.1\n"):  # kept alive, waiting
            chunk = idle.recv(65536)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
        assert answering.wait(2)
        began = time.monotonic()
        front.close()
        took = time.monotonic() - began
        assert [sock.recv(65536) for sock in (idle, silent, busy)] == [b"", b"", b""]
        gc.collect()  # a task destroyed while pending is reported when it is collected
    assert not front._thread.is_alive()
    assert front.loop.is_closed()
    assert took < 1.0, f"{took:.2f}s"
    assert [r.getMessage() for r in caplog.records] == []


def test_a_failure_the_front_does_not_expect_costs_its_connection_and_is_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the admission hook (it runs on the loop, outside any route's guard): the
    connection is closed unanswered and the front says so once, in its own log."""
    async def broken(_request: Request) -> Response | None:
        raise RuntimeError("admission bug")

    with caplog.at_level(logging.WARNING), running(echo, admit=broken) as front:
        answers = [talk(front.port, b"GET / HTTP/1.1\r\n\r\n") for _ in range(2)]
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            gc.collect()  # the task's failure is reported when the task is collected
            time.sleep(0.01)
    assert answers == [b"", b""]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("exporter.web.httpfront",
         "HTTP front: Task exception was never retrieved (RuntimeError('admission bug'))")]


def test_plain_http_to_the_tls_port_is_closed_and_is_not_news(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    with caplog.at_level(logging.WARNING), running(echo, tls=context) as front:
        answer = talk(front.port, b"GET / HTTP/1.1\r\n\r\n")
        deadline = time.monotonic() + 5
        while front._conns and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not front._conns
        gc.collect()  # a task's error is reported when the task is collected
    assert not answer.endswith(b"<open>")  # closed at once, not at the header deadline
    assert [r.getMessage() for r in caplog.records] == []


def test_tls_is_served_with_the_context_given_at_accept(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    client = ssl.create_default_context(cafile=str(pki.ca))
    with running(echo, tls=context) as front, socket.create_connection(
            ("127.0.0.1", front.port), timeout=2) as raw, client.wrap_socket(
            raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.endswith(b"\r\n\r\nGET 127.0.0.1\n")


def test_a_connection_gone_after_flushing_its_close_can_still_be_evicted() -> None:
    """An answer that had to be flushed after its close: once the client took it, the
    connection is gone; evicting it then (at the cap, or at close) does nothing more, it
    must not raise (it would kill the accept loop, or the loop at close)."""
    async def flushed_and_gone() -> tuple[_Conn, bytes]:
        loop = asyncio.get_running_loop()
        client, server = socket.socketpair()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, server)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        writer.write(b"x" * 200_000 + b"end")
        writer.close()
        assert transport.get_write_buffer_size() > 0  # most of it waits in the transport
        with client:
            client.settimeout(5)
            taken = await asyncio.to_thread(read_to_end, client)
        await writer.wait_closed()
        conn = _Conn(server, "", loop.time())
        conn.transport = transport
        return conn, taken

    conn, taken = asyncio.run(flushed_and_gone())
    assert taken.endswith(b"end")
    conn.evict()  # nothing raised


def read_to_end(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_the_loop_runs_in_a_daemon_thread_named_for_it() -> None:
    """A front left open must not hold up an exit, and its loop shows in a thread dump (next
    to the route pools' http-* threads)."""
    seen: list[tuple[str, bool]] = []

    async def where(request: Request) -> Response:
        seen.append((threading.current_thread().name, threading.current_thread().daemon))
        return await echo(request)

    with running(where) as front:
        talk(front.port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert seen == [("http", True)]
