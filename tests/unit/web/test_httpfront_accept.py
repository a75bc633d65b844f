"""The HTTP front's accept loop step by step: real loopback connections queued in a real
listen socket (whose accept can be made to fail as the kernel's does), a clock the test
moves, and a front whose event loop runs only when a step needs it, so nothing else moves
meanwhile."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import pytest

from exporter.web.httpfront import HttpFront, Limits, _Conn
from exporter.web.httpwire import Request, Response
from tests.sockets import read_until_closed

# Each test takes a second or two: one that loops forever (a mutant's doing, under mutation
# testing) fails here instead of holding the run until mutmut's own limit.
pytestmark = pytest.mark.timeout(30)

REQUEST = b"GET /-/healthy HTTP/1.1\r\n\r\n"


class Listener(socket.socket):
    """A listen socket on loopback whose next accepts can be scripted to fail."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(1024)
        self.setblocking(False)
        self.script: deque[OSError | None] = deque()  # None: a real accept; then real ones
        self.clients: list[socket.socket] = []
        self.on_accept: Callable[[], None] = lambda: None

    def accept(self) -> tuple[socket.socket, Any]:
        self.on_accept()
        if self.script and (error := self.script.popleft()) is not None:
            raise error
        return super().accept()

    def queue(self, count: int = 1, sent: bytes = b"") -> list[socket.socket]:
        """``count`` clients, each having sent ``sent``, queued in the kernel (not accepted)."""
        clients = [socket.create_connection(self.getsockname(), timeout=5)
                   for _ in range(count)]
        self.clients += clients
        for client in clients:
            client.sendall(sent)
        port = self.getsockname()[1]
        ports = {client.getsockname()[1] for client in clients}
        wait_until(lambda: ports <= server_ends(port, sent=bool(sent)), "connections queued")
        return clients


def wait_until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.01)


def _tcp_rows() -> list[list[str]]:
    with open("/proc/net/tcp", encoding="ascii") as f:
        return [line.split() for line in f.readlines()[1:]]


def queued(port: int) -> int:
    """Connections the kernel holds for the listener on ``port``, not accepted yet."""
    local = f"0100007F:{port:04X}"
    return sum(int(row[4].split(":")[1], 16) for row in _tcp_rows()
               if row[1] == local and row[3] == "0A")


def sending(port: int) -> set[int]:
    """The client ports whose bytes wait unread in the server's end of a connection to
    ``port`` (queued or accepted)."""
    return server_ends(port, sent=True)


def server_ends(port: int, sent: bool) -> set[int]:
    """The client ports whose connections to ``port`` are established on the server's side
    (queued or accepted), only those with bytes waiting unread if ``sent``."""
    local = f"0100007F:{port:04X}"
    return {int(row[2].split(":")[1], 16) for row in _tcp_rows()
            if row[1] == local and row[3] == "01"
            and (not sent or int(row[4].split(":")[1], 16) > 0)}


class SteppedClock:
    """A loop clock the test moves: it advances ``step`` at each reading."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def never(_request: Request) -> Response:
    raise AssertionError("no request is answered here")


@contextmanager
def stepped(max_connections: int = 8, clock: SteppedClock | None = None
            ) -> Iterator[tuple[HttpFront, Listener]]:
    """A front on a scripted listener, its loop not running (``clock`` its time, if given)."""
    listener = Listener()
    front = HttpFront(listener, never, lambda: None,
                      Limits(max_connections=max_connections), "test")
    if clock is not None:
        front.loop.time = clock  # type: ignore[method-assign]
    try:
        yield front, listener
    finally:
        conns = list(front._conns) + front._unstarted
        tasks = [conn.task for conn in conns if conn.task is not None]
        for conn in conns:
            conn.evict()
        if clock is not None:
            del front.loop.time
        if tasks:
            front.loop.run_until_complete(asyncio.wait(tasks))
        for conn in conns:
            conn.sock.close()
        front.loop.close()
        for client in listener.clients:
            client.close()
        listener.close()


def open_ones(clients: list[socket.socket]) -> list[bool]:
    """Whether each client's connection is still open (nothing read, no end seen)."""
    result = []
    for client in clients:
        client.settimeout(0.05)
        try:
            result.append(client.recv(1, socket.MSG_PEEK) != b"")
        except TimeoutError:
            result.append(True)
        except ConnectionResetError:
            result.append(False)
    return result


def test_a_burst_within_one_slice_is_accepted_whole() -> None:
    with stepped(max_connections=200, clock=SteppedClock(step=0.0)) as (front, listener):
        listener.queue(100)
        admitted: list[_Conn] = []
        assert front._accept_some(1000, admitted) == "drained"
        assert len(admitted) == 100
        assert queued(listener.getsockname()[1]) == 0


def test_a_flood_is_accepted_a_slice_at_a_time() -> None:
    """Each reading of the clock is past the slice: the accepts stop part-way (the rest stay
    queued in the kernel), and the next batch goes on where this one stopped."""
    with stepped(max_connections=200, clock=SteppedClock(step=1.0)) as (front, listener):
        listener.queue(100)
        port = listener.getsockname()[1]
        first: list[_Conn] = []
        assert front._accept_some(1000, first) == "sliced"
        assert 0 < len(first) < 100
        assert queued(port) == 100 - len(first)
        second: list[_Conn] = []
        assert front._accept_some(1000, second) == "sliced"
        assert len(second) > 0
        assert queued(port) == 100 - len(first) - len(second)


def test_an_aborted_connection_is_skipped_and_accepting_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    with stepped() as (front, listener), caplog.at_level(logging.WARNING,
                                                         "exporter.web.httpfront"):
        listener.queue(2)
        listener.script.extend([None, ConnectionAbortedError(errno.ECONNABORTED, "aborted")])
        admitted: list[_Conn] = []
        assert front._accept_some(100, admitted) == "drained"
        assert len(admitted) == 2
    assert caplog.records == []  # a client that gave up is not news


def test_an_accept_failure_is_said_once_and_leaves_the_queue_to_the_kernel(
        caplog: pytest.LogCaptureFixture) -> None:
    emfile = OSError(errno.EMFILE, "Too many open files")
    with stepped() as (front, listener), caplog.at_level(logging.WARNING,
                                                         "exporter.web.httpfront"):
        listener.queue(2)
        port = listener.getsockname()[1]
        listener.script.extend([None, emfile])
        admitted: list[_Conn] = []
        assert front._accept_some(100, admitted) == "failed"
        assert len(admitted) == 1
        assert queued(port) == 1  # still there for the retry
        listener.script.append(emfile)
        assert front._accept_some(100, admitted) == "failed"
        assert front._accept_some(100, admitted) == "drained"
        assert len(admitted) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "accepting a connection failed ([Errno 24] Too many open files); retrying"]


def test_after_an_accept_failure_the_loop_pauses_briefly_then_retries() -> None:
    """Not at once (the listen socket stays readable: it would spin a core), not for long
    (connections wait in the queue meanwhile)."""
    with stepped() as (front, listener):
        listener.queue(1)
        listener.script.append(OSError(errno.ENFILE, "Too many open files in system"))
        began = time.monotonic()
        assert front.loop.run_until_complete(front._accept_batch(100)) is False
        took = time.monotonic() - began
        assert 0.05 <= took < 1.0, f"{took:.2f}s"
        assert queued(listener.getsockname()[1]) == 1


def finished(coroutine: Any) -> tuple[bool, object]:
    """Step ``coroutine`` once: (True, its value) if it ended without waiting on anything."""
    try:
        coroutine.send(None)
    except StopIteration as end:
        return True, end.value
    coroutine.close()
    return False, None


def test_a_drained_batch_goes_straight_back_to_waiting_for_the_next_connection() -> None:
    with stepped() as (front, listener):
        listener.queue(2, sent=REQUEST)
        assert finished(front._accept_batch(100)) == (True, False)
        assert len(front._conns) == 2
        assert all(conn.task is not None for conn in front._conns)  # both started


def test_after_a_slice_a_waiting_connection_starts_one_batch_later() -> None:
    """In a flood the connections admitted last, still waiting on their clients, are the next
    to make room: they get no task until the next batch, which starts them even when nothing
    more was queued. One whose request is in starts at once."""
    with stepped(max_connections=200, clock=SteppedClock(step=1.0)) as (front, listener):
        arrived = listener.queue(1, sent=REQUEST)
        listener.queue(40)
        batch = front._accept_batch(1000)
        assert finished(batch) == (False, None)  # it yields to the connections' own work
        started = {conn.sock.getpeername()[1]: conn.task is not None for conn in front._conns}
        assert started.pop(arrived[0].getsockname()[1]) is True
        assert set(started.values()) == {False}
        assert len(started) < 40  # sliced: the rest still queued
        front.loop.time = SteppedClock(step=0.0)  # type: ignore[method-assign]
        assert finished(front._accept_batch(1000)) == (True, False)
        assert len(front._conns) == 41
        assert all(conn.task is not None for conn in front._conns)


def test_below_the_cap_no_connection_is_closed_for_room() -> None:
    with stepped(max_connections=4) as (front, listener):
        silent = listener.queue(3)
        admitted: list[_Conn] = []
        assert front._accept_some(100, admitted) == "drained"
        assert len(admitted) == 3
        assert open_ones(silent) == [True, True, True]


async def echo(request: Request) -> Response:
    return Response(HTTPStatus.OK, f"{request.method} {request.path}\n".encode())


class Held:
    """An app whose answers wait until released; ``entered`` is set when one has begun."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def __call__(self, request: Request) -> Response:
        if request.path == "/quick":
            return await echo(request)
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 10)
        return Response(HTTPStatus.OK, f"{request.method} {request.path} done\n".encode())


@contextmanager
def running(listener: socket.socket, app: Callable[[Request], Any], max_connections: int,
            admit: Callable[[Request], Any] | None = None, idle_timeout: float = 5.0,
            write_timeout: float = 5.0) -> Iterator[HttpFront]:
    front = HttpFront(listener, app, lambda: None,
                      Limits(max_connections=max_connections, header_timeout=5.0,
                             body_timeout=5.0, idle_timeout=idle_timeout,
                             write_timeout=write_timeout),
                      "test", admit=admit)
    front.start()
    try:
        yield front
    finally:
        front.close()


def answer_of(sock: socket.socket, wait: float = 5.0) -> bytes:
    """What ``sock`` receives until the front closes it (OPEN appended if it did not)."""
    return read_until_closed(sock, wait)


def test_at_the_cap_a_body_that_does_not_come_makes_room_before_an_older_silent_one() -> None:
    """No endpoint takes a body: a head whose announced body is late waits on its client and
    is the first to go when room is needed, before a connection that came earlier."""
    headed = threading.Event()

    async def admit(_request: Request) -> Response | None:
        headed.set()  # the body is awaited from the same step on
        return None

    with Listener() as listener, running(listener, echo, 2, admit) as front, \
            socket.create_connection(("127.0.0.1", front.port), timeout=5) as silent, \
            socket.create_connection(("127.0.0.1", front.port), timeout=5) as body:
        body.sendall(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        assert headed.wait(5)
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as late:
            late.sendall(b"GET /late HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert answer_of(late).endswith(b"\r\n\r\nGET /late\n")
        assert answer_of(body) == b""  # closed, never answered
        assert answer_of(silent, 0.3) == b"<open>"


def test_a_connection_whose_body_came_is_not_closed_for_room_while_answered() -> None:
    headed = threading.Event()

    async def admit(_request: Request) -> Response | None:
        headed.set()
        return None

    held = Held()
    with Listener() as listener, running(listener, held, 1, admit) as front, \
            socket.create_connection(("127.0.0.1", front.port), timeout=5) as first:
        first.sendall(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        assert headed.wait(5)
        first.sendall(b"defghij")  # the body's rest: now it is being answered
        assert held.entered.wait(5)
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as late:
            late.sendall(b"GET /late HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert answer_of(late, 0.3) == b"<open>"  # queued: nothing can make room
            held.release.set()
            assert answer_of(first).endswith(b"\r\n\r\nPOST / done\n")  # then idle: room
            assert answer_of(late).endswith(b"\r\n\r\nGET /late done\n")


def test_connections_held_back_by_a_slice_start_at_once_when_nothing_more_comes() -> None:
    """A slice that ran out just as the queue emptied: the connections it held back start in
    the next batch, which follows at once, not when another connection happens to arrive."""
    with stepped(max_connections=200, clock=SteppedClock(step=1.0)) as (front, listener):
        listener.queue(100)
        one_slice: list[_Conn] = []
        assert front._accept_some(1000, one_slice) == "sliced"
    jumped = [0.0]
    with Listener() as listener:
        clients = listener.queue(len(one_slice))  # exactly what one slice takes
        listener.on_accept = lambda: jumped.__setitem__(0, 0.05)  # past the slice by the end
        front = HttpFront(listener, echo, lambda: None, Limits(max_connections=200), "test")
        front.loop.time = lambda: time.monotonic() + jumped[0]  # type: ignore[method-assign]
        front.start()
        try:
            wait_until(lambda: len(front._conns) == len(clients), "all admitted, none asked")
            with clients[0] as client:
                began = time.monotonic()
                client.sendall(b"GET /first HTTP/1.1\r\nConnection: close\r\n\r\n")
                answer = answer_of(client, 3.0)
                took = time.monotonic() - began
        finally:
            front.close()
            for client in clients:
                client.close()
    assert answer.endswith(b"\r\n\r\nGET /first\n")
    assert took < 0.8, f"{took:.2f}s: the held-back connections waited"


def test_at_the_cap_a_newcomer_is_refused_when_every_other_has_its_request_in() -> None:
    """Both slots waited on their clients when admitted and their requests have arrived since
    (their tasks not started yet): neither is closed for room, the newcomer is."""
    with stepped(max_connections=2) as (front, listener):
        admitted = listener.queue(2)
        first: list[_Conn] = []
        assert front._accept_some(100, first) == "drained"
        port = listener.getsockname()[1]
        for client in admitted:
            client.sendall(REQUEST)
        wait_until(lambda: len(sending(port)) == 2, "both requests in")
        late = listener.queue(1)
        second: list[_Conn] = []
        front._accept_some(100, second)
        assert second == []
        assert open_ones(late) == [False]  # refused
        assert open_ones(admitted) == [True, True]
        assert len(front._conns) == 2


def test_a_connection_that_ended_while_idle_leaves_no_room_behind() -> None:
    """An idle connection the front closed at its idle deadline is gone for good: later, with
    the one slot being answered, a newcomer waits in the backlog; it is not admitted over the
    cap in place of the connection that already ended."""
    held = Held()
    with Listener() as listener, running(listener, held, 1, idle_timeout=0.3) as front:
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as idle:
            idle.sendall(b"GET /quick HTTP/1.1\r\n\r\n")
            assert answer_of(idle).endswith(b"\r\n\r\nGET /quick\n")  # then idle, closed
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as busy:
            busy.sendall(b"GET /held HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert held.entered.wait(5)
            with socket.create_connection(("127.0.0.1", front.port), timeout=5) as late:
                late.sendall(b"GET /quick HTTP/1.1\r\nConnection: close\r\n\r\n")
                assert answer_of(late, 0.3) == b"<open>"  # queued behind the cap
                held.release.set()
                assert answer_of(busy).endswith(b"\r\n\r\nGET /held done\n")
                assert answer_of(late).endswith(b"\r\n\r\nGET /quick\n")


def test_the_last_bytes_of_an_answer_are_held_no_longer_than_the_write_deadline() -> None:
    """The answer is handed over whole (what the kernel does not take waits in the front),
    then the client reads nothing: the connection is still cut at the write deadline, not
    kept until the client reads the rest."""
    body = b"x" * 40_000 + b"the end\n"

    async def app(_request: Request) -> Response:
        return Response(HTTPStatus.OK, body, close=True)

    with Listener() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the accepted inherit it
        with running(listener, app, 8, write_timeout=0.5) as front:
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            with client:
                client.connect(("127.0.0.1", front.port))
                client.sendall(b"GET / HTTP/1.1\r\n\r\n")
                wait_until(lambda: bool(front._conns), "the connection admitted")
                wait_until(lambda: not front._conns, "the connection ended")
                answer = answer_of(client, 2.0)
            with socket.create_connection(("127.0.0.1", front.port), timeout=5) as after:
                after.sendall(b"GET / HTTP/1.1\r\n\r\n")  # (its socket likely reuses the fd)
                later = answer_of(after, 3.0)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not answer.endswith(b"the end\n")  # cut, not kept open until read
    assert later.endswith(b"the end\n")  # the cut one left nothing behind


def test_an_answer_flushed_after_its_close_ends_the_connection_quietly(
        caplog: pytest.LogCaptureFixture) -> None:
    """Most of the answer still waits in the front when the connection is closed (the
    client reads slowly); once the client has taken it all, the connection ends as any
    other: no error is left behind to be reported."""
    body = b"x" * 40_000 + b"the end\n"

    async def app(_request: Request) -> Response:
        return Response(HTTPStatus.OK, body, close=True)

    with caplog.at_level(logging.WARNING), Listener() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the accepted inherit it
        with running(listener, app, 8) as front:
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.settimeout(5)
            with client:
                client.connect(("127.0.0.1", front.port))
                client.sendall(b"GET / HTTP/1.1\r\n\r\n")
                wait_until(lambda: bool(front._conns), "the connection admitted")
                client.recv(1, socket.MSG_PEEK)  # the answer was handed over and closed
                answer = answer_of(client)
            wait_until(lambda: not front._conns, "the connection ended")
            gc.collect()  # a task's error is reported when the task is collected
    assert answer.endswith(b"the end\n")
    assert [r.getMessage() for r in caplog.records] == []


def test_a_request_that_came_after_its_connection_was_admitted_is_not_closed_for_room() -> None:
    """Admitted while it waited on its client, then its request came: from then on it is
    being answered, and a newcomer at the cap waits in the backlog."""
    held = Held()
    with Listener() as listener, running(listener, held, 1) as front, \
            socket.create_connection(("127.0.0.1", front.port), timeout=5) as first:
        wait_until(lambda: bool(front._conns), "the connection admitted")
        first.sendall(b"GET /held HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert held.entered.wait(5)
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as late:
            late.sendall(b"GET /quick HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert answer_of(late, 0.3) == b"<open>"  # queued: nothing can make room
            held.release.set()
            assert answer_of(first).endswith(b"\r\n\r\nGET /held done\n")
            assert answer_of(late).endswith(b"\r\n\r\nGET /quick\n")


def test_closing_while_a_slice_holds_connections_back_closes_them_too() -> None:
    """A shutdown in the middle of a flood: the connections a slice admitted but has not
    started yet (no task) are closed with the rest, and the loop ends cleanly."""
    with Listener() as listener:
        clients = listener.queue(40)
        front = HttpFront(listener, never, lambda: None, Limits(max_connections=200), "test")
        front.loop.time = SteppedClock(step=1.0)  # type: ignore[method-assign]
        admitted: list[_Conn] = []
        assert front._accept_some(1000, admitted) == "sliced"
        front._start(admitted, sliced=True)
        assert front._unstarted  # held back: no task yet
        del front.loop.time
        front.loop.call_soon(front.loop.stop)
        front._run()  # what the loop thread runs: here it stops at once, then cleans up
        assert front.loop.is_closed()
        assert open_ones(clients[:len(admitted)]) == [False] * len(admitted)
        for client in clients:
            client.close()
