"""The bounded HTTP front: one event-loop thread owns every socket; routes run on small pools.

Why this shape (docs/architecture.md, "The HTTP front"): a waiting connection costs a few KiB
and no thread, so a flood, a slowloris or a slow reader cannot take the threads that answer
scrapes. At most ``max_connections`` are open at once. At the cap, the connection that has
waited longest for its client (TLS handshake, request head, or idle between requests) is
closed to admit the new one; when every connection is being answered, new ones wait in the
listen backlog (and the accept loop sleeps until one is done or waits on its client again).
A request is admitted (authenticated) on its head, before any body is awaited; a body has a
short deadline of its own and its connection stays evictable meanwhile, since it waits on the
client. Every wait on a client has a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from exporter.core.once import Once
from exporter.web.httpwire import (
    Request,
    RequestError,
    Response,
    announced_body,
    head_end,
    not_http,
    parse_head,
    response_head,
)

log = logging.getLogger(__name__)

App = Callable[[Request], Awaitable[Response]]
# Asked on the request head, before any body is read: None admits it, a Response refuses it.
Admit = Callable[[Request], Awaitable[Response | None]]
TlsSource = Callable[[], ssl.SSLContext | None]  # asked at each accept: a reload takes effect
_CHUNK = 64 * 1024  # written at a time, so an unread answer queues about this much
# Longest the loop accepts before the connections' own work gets a turn: a client that
# re-connects as fast as it is dropped keeps the backlog full for good, and batches that
# drained it for 0.2 s at a time made every step of a scrape wait that long (issue #26).
_ACCEPT_SLICE = 0.02  # seconds
_CLIENT_GONE = (OSError, TimeoutError, asyncio.IncompleteReadError)  # SSLError is an OSError


@dataclass(frozen=True)
class Limits:
    """How much the front holds and for how long; the defaults are the documented ones."""

    max_connections: int = 512
    header_timeout: float = 10.0  # TLS handshake + request head + body, from accept
    body_timeout: float = 2.0  # a body, once its head is admitted (no endpoint takes one)
    idle_timeout: float = 60.0  # a kept-alive connection waiting for its next request
    write_timeout: float = 30.0  # a whole answer must be taken within this
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024  # no endpoint takes a body; a small one is read and dropped

    @property
    def backlog(self) -> int:
        """Listen backlog. Deep, because the loop drains it fast (at the cap by closing the
        longest-waiting connection) while a full queue drops SYNs, and a dropped SYN costs a
        scraper a one-second retransmit. The kernel caps it at net.core.somaxconn."""
        return max(4096, 2 * self.max_connections)


class _Conn:
    """One connection: its socket, its task once started, its transport once it has one."""

    def __init__(self, sock: socket.socket, peer: str, accepted: float) -> None:
        self.sock = sock
        self.peer = peer
        self.accepted = accepted
        self.task: asyncio.Task[None] | None = None  # from then on it closes the socket itself
        self.transport: asyncio.WriteTransport | None = None

    def evict(self) -> None:
        if self.transport is not None:
            _abort(self.transport)
        if self.task is None:
            self.sock.close()
        else:
            self.task.cancel()


class _Wire:
    """Bytes read from a connection but not consumed yet (a pipelined request stays here)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.buffer = bytearray()

    async def more(self) -> bool:
        chunk = await self._reader.read(16 * 1024)
        self.buffer += chunk
        return bool(chunk)

    async def head(self, limit: int) -> bytes | None:
        """The next request head (at most ``limit`` bytes), or None at a clean end. Blank lines
        before a request are dropped, whether they came alone or in one read with it."""
        while True:
            while self.buffer.startswith((b"\r\n", b"\n")):  # allowed before a request
                del self.buffer[:1 + self.buffer.startswith(b"\r")]
            if (end := head_end(self.buffer)) >= 0:
                break
            if not_http(self.buffer) and self.buffer != b"\r":  # b"\r": a blank line begun
                raise RequestError(HTTPStatus.BAD_REQUEST, "not an HTTP request")
            if len(self.buffer) > limit:
                raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
            if not await self.more():
                if self.buffer:
                    raise asyncio.IncompleteReadError(bytes(self.buffer), None)
                return None
        if end > limit:  # the whole head came in one read: the cap holds all the same
            raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def holds(self, count: int) -> bool:
        """Whether ``count`` bytes are already read (a body that needs no wait)."""
        return len(self.buffer) >= count

    async def skip(self, count: int) -> None:
        """Drop ``count`` bytes of body: they must never be read as a request."""
        while len(self.buffer) < count:
            if not await self.more():
                raise asyncio.IncompleteReadError(bytes(self.buffer), count)
        del self.buffer[:count]


class HttpFront:
    """Serves ``app`` on a bound, listening socket from one event-loop thread."""

    def __init__(self, sock: socket.socket, app: App, tls: TlsSource, limits: Limits,
                 server: str, *, admit: Admit | None = None) -> None:
        self._sock = sock
        self._app = app
        self._admit = admit or _admit_all
        self._tls = tls
        self._limits = limits
        self._server = server
        self._conns: set[_Conn] = set()
        # Those waiting on their client, longest-waiting first: the next to make room.
        self._waiting: OrderedDict[_Conn, None] = OrderedDict()
        self._unstarted: list[_Conn] = []  # admitted in the last slice, waiting, no task yet
        self._told = Once()
        self._freed = asyncio.Event()  # a connection ended or waits on its client again
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, drop every connection, and close the socket."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        accept = self.loop.create_task(self._accept_forever())
        try:
            self.loop.run_forever()
        finally:
            accept.cancel()
            tasks = [conn.task for conn in self._conns if conn.task is not None]
            for conn in list(self._conns):
                conn.evict()
            self.loop.run_until_complete(asyncio.gather(accept, *tasks, return_exceptions=True))
            self.loop.close()

    async def _accept_forever(self) -> None:
        self._sock.setblocking(False)
        more = False
        while True:
            if not more:
                await self._readable()
            # Drain a burst in slices: in a flood, connections admitted early are the ones
            # later accepts close, before their tasks ever run; that keeps the cost per
            # flooding connection to an accept and a close, and a scraper queued behind
            # thousands of them is reached in a fraction of a second.
            more = await self._accept_batch(4 * self._limits.max_connections + 1024)

    async def _accept_batch(self, most: int) -> bool:
        """Accept what is queued (up to ``most``, for at most one slice), making room at the
        cap; then start the connections still admitted (a flood's are closed before costing a
        task). When no room can be made, sleep until some can: the listen socket stays
        readable meanwhile, and polling it again at once would spin a core. True when the
        slice ran out: the next batch follows at once (connections held back for a slice
        start there even if nothing more arrives)."""
        admitted: list[_Conn] = []
        stopped = "failed"
        try:
            stopped = self._accept_some(most, admitted)
        finally:
            self._start(admitted, sliced=stopped == "sliced")
        if stopped == "failed":
            await asyncio.sleep(0.1)
        elif stopped == "full":
            await self._freed.wait()
        elif stopped == "sliced":
            await asyncio.sleep(0)  # the connections' own work gets its turn
        return stopped == "sliced"

    def _start(self, admitted: list[_Conn], sliced: bool) -> None:
        """Start a task for each connection still admitted. After a slice that left more
        queued, one still waiting on its client waits one more slice first: in a flood it is
        the next to make room, and closing it then costs no task."""
        earlier, self._unstarted = self._unstarted, []
        for conn in earlier:
            if conn in self._conns:
                self._begin(conn)
        for conn in admitted:
            if conn in self._conns and sliced and conn in self._waiting:
                self._unstarted.append(conn)
            elif conn in self._conns:
                self._begin(conn)

    def _begin(self, conn: _Conn) -> None:
        conn.task = self.loop.create_task(self._serve(conn))
        conn.task.add_done_callback(functools.partial(self._forget, conn))

    def _accept_some(self, most: int, admitted: list[_Conn]) -> str:
        """Accept into ``admitted``; why it stopped: "drained", "sliced" (time is up, more may
        be queued), "full" or "failed"."""
        until = self.loop.time() + _ACCEPT_SLICE
        for count in range(most):
            if count % 32 == 31 and self.loop.time() > until:
                return "sliced"
            full = len(self._conns) >= self._limits.max_connections
            if full and not self._waiting:
                self._freed.clear()
                return "full"  # every connection is being answered: leave the rest queued
            try:
                client, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return "drained"
            except ConnectionAbortedError:
                continue
            except OSError as error:  # EMFILE and friends: the kernel keeps the queue
                self.once("accept", "accepting a connection failed (%s); retrying", error)
                return "failed"
            client.setblocking(False)
            if full and not self._make_room():  # only now: a new connection is really there
                client.close()  # every other has its request in: over the cap, refused
                continue
            conn = _Conn(client, _peer(address), self.loop.time())
            self._conns.add(conn)
            if not _request_arrived(client):
                self._waiting[conn] = None
            admitted.append(conn)
        return "drained"

    async def _readable(self) -> None:
        ready: asyncio.Future[None] = self.loop.create_future()
        fd = self._sock.fileno()
        self.loop.add_reader(fd, _settle, ready)
        try:
            await ready
        finally:
            self.loop.remove_reader(fd)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest on its client, but not one whose
        request has arrived meanwhile (it is about to be answered); False if none is left."""
        while self._waiting:
            victim, _ = self._waiting.popitem(last=False)
            if victim.transport is None and _request_arrived(victim.sock):
                continue
            self._conns.discard(victim)
            victim.evict()
            return True
        return False

    def _forget(self, conn: _Conn, _task: object = None) -> None:
        self._conns.discard(conn)
        self._waiting.pop(conn, None)
        self._freed.set()

    def _waits(self, conn: _Conn, waiting: bool) -> None:
        """Mark ``conn`` as waiting on its client (evictable) or being answered (not)."""
        if conn not in self._conns:
            return
        if waiting:
            self._waiting[conn] = None
            self._waiting.move_to_end(conn)
            self._freed.set()  # room can be made again: wake a sleeping accept loop
        else:
            self._waiting.pop(conn, None)

    async def _serve(self, conn: _Conn) -> None:
        deadline = conn.accepted + self._limits.header_timeout
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await self._open(conn.sock)
            conn.transport = writer.transport
            await self._exchange(_Wire(reader), writer, conn, deadline)
            writer.close()  # flushes what is queued (and TLS close_notify), then closes
            async with asyncio.timeout(self._limits.write_timeout):
                await writer.wait_closed()
        except _CLIENT_GONE:
            pass  # the client went away or ran out of time: nothing to tell anyone
        finally:
            if writer is not None:
                _abort(writer.transport)
            conn.sock.close()

    async def _open(self, client: socket.socket
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader = asyncio.StreamReader(limit=self._limits.max_head_bytes, loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls
        context = self._tls()
        transport, _ = await self.loop.connect_accepted_socket(
            lambda: protocol, client, ssl=context,
            ssl_handshake_timeout=self._limits.header_timeout if context else None)
        return reader, asyncio.StreamWriter(transport, protocol, reader, self.loop)

    async def _exchange(self, wire: _Wire, writer: asyncio.StreamWriter, conn: _Conn,
                        deadline: float) -> None:
        """Requests one after another until either side closes."""
        while True:  # waiting on the client from here until its request head is in
            try:
                request = await self._read_head(wire, conn.peer, deadline)
            except RequestError as bad:
                answer = Response(bad.status, f"{bad.reason}\n".encode(), close=True)
                await self._write(writer, answer, head_only=False, close=True)
                return
            if request is None:
                return
            self._waits(conn, False)
            refusal = await self._admit(request)
            if refusal is None:
                await self._read_body(wire, conn, request.body_length, deadline)
            response = refusal or await self._answer(request)
            # A refused request's body is never read, so nothing after it can be read either.
            close = (response.close or not request.keep_alive
                     or (refusal is not None and request.body_length > 0))
            await self._write(writer, response, request.method == "HEAD", close)
            if close:
                return
            self._waits(conn, True)
            async with asyncio.timeout(self._limits.idle_timeout):
                if not wire.buffer and not await wire.more():
                    return
            deadline = self.loop.time() + self._limits.header_timeout

    async def _read_head(self, wire: _Wire, peer: str, deadline: float) -> Request | None:
        """The next request head; None at a clean end."""
        async with asyncio.timeout_at(deadline):
            head = await wire.head(self._limits.max_head_bytes)
        if head is None:
            return None
        request = parse_head(head, peer)
        if request.body_length > self._limits.max_body_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "no endpoint takes a body")
        return request

    async def _read_body(self, wire: _Wire, conn: _Conn, length: int, deadline: float) -> None:
        """Read and drop an admitted request's body, within a short deadline of its own and
        evictable meanwhile: a head that promises a body it does not send is waiting on its
        client, not being answered. No endpoint takes a body, so such a connection is the
        first to make room (before a new one whose head may be on its way)."""
        waits = not wire.holds(length)
        if waits:
            self._waits(conn, True)
            if conn in self._waiting:
                self._waiting.move_to_end(conn, last=False)
        async with asyncio.timeout_at(min(deadline, self.loop.time() + self._limits.body_timeout)):
            await wire.skip(length)
        if waits:
            self._waits(conn, False)

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._app(request)
        except Exception as error:  # noqa: BLE001 (a bug must cost one answer, not the loop)
            self.once(f"app:{type(error).__name__}", "answering %s failed: %r",
                      request.path, error, exc_info=True)
            return Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", close=True)

    async def _write(self, writer: asyncio.StreamWriter, response: Response, head_only: bool,
                     close: bool) -> None:
        writer.write(response_head(response, close, self._server))
        parts = () if head_only else (response.body, response.tail)
        async with asyncio.timeout(self._limits.write_timeout):
            for part in parts:
                view = memoryview(part)  # its slices share the bytes, never copy them
                for start in range(0, len(view), _CHUNK):
                    writer.write(view[start:start + _CHUNK])
                    await writer.drain()  # waits while more than the high-water mark is queued
            await writer.drain()

    def once(self, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message`` the first time ``kind`` happens: a flood must not flood the log."""
        if self._told.first(kind):
            log.warning(message, *args, exc_info=exc_info)

    def _loop_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """asyncio's own reports: a client's failure is not news; anything else is said once."""
        error = context.get("exception")
        if isinstance(error, OSError | asyncio.CancelledError):
            return
        self.once(f"loop:{type(error).__name__}", "HTTP front: %s (%r)",
                  context.get("message"), error)


def _request_arrived(sock: socket.socket) -> bool:
    """Whether a whole request, its head and any body the head announces, already waits in
    the kernel (a peek, nothing consumed).

    Such a connection is not closed to make room before it is read: in a flood, the scraper
    queued behind thousands of half-open requests is told from them by this alone. A head
    whose announced body is not there has not arrived: it would wait on its client, so it is
    as evictable as a half-open one, and closing it costs no task (issue #26, N2). Under TLS
    the bytes are a handshake, so this is False; a TLS connection gets its chance in arrival
    order.
    """
    try:
        peeked = sock.recv(4096, socket.MSG_PEEK)
    except OSError:  # BlockingIOError: nothing yet
        return False
    end = head_end(peeked)
    return end >= 0 and len(peeked) - end >= announced_body(peeked[:end])


def _abort(transport: asyncio.WriteTransport) -> None:
    """Drop the connection now, unless it is gone already: a socket transport whose close
    had to flush first lets go of its protocol (and its loop) once flushed, and asyncio's
    abort then raises (3.11), killing whatever called it (a task, the accept loop)."""
    if transport.get_protocol() is not None:
        transport.abort()


async def _admit_all(_request: Request) -> Response | None:
    return None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _peer(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""
