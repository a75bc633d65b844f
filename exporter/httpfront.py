"""The bounded HTTP front: one event-loop thread owns every socket; routes run on small pools.

Why this shape (docs/architecture.md, "The HTTP front"): a waiting connection costs a few KiB
and no thread, so a flood, a slowloris or a slow reader cannot take the threads that answer
scrapes. At most ``max_connections`` are open at once. At the cap, the connection that has
waited longest for its client (TLS handshake, request head, or idle between requests) is
closed to admit the new one; when every connection is being answered, new ones wait in the
listen backlog. Every wait on a client has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from exporter.httpwire import (
    Request,
    RequestError,
    Response,
    head_end,
    not_http,
    parse_head,
    response_head,
)

log = logging.getLogger(__name__)

App = Callable[[Request], Awaitable[Response]]
TlsSource = Callable[[], ssl.SSLContext | None]  # asked at each accept: a reload takes effect
_CHUNK = 64 * 1024  # written at a time, so an unread answer queues about this much
_CLIENT_GONE = (OSError, TimeoutError, asyncio.IncompleteReadError)  # SSLError is an OSError


@dataclass(frozen=True)
class Limits:
    """How much the front holds and for how long; the defaults are the documented ones."""

    max_connections: int = 512
    header_timeout: float = 10.0  # TLS handshake + request head + body, from accept
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
    """One connection: its socket, its task, and its transport once it has one."""

    def __init__(self, sock: socket.socket, task: asyncio.Task[None]) -> None:
        self.sock = sock
        self.task = task
        self.started = False  # the task has run: from then on it closes the socket itself
        self.transport: asyncio.WriteTransport | None = None

    def evict(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self.started:
            self.sock.close()  # a task cancelled before it ran has no finally to do it
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
        """The next request head, or None at a clean end of the connection."""
        while (end := head_end(self.buffer)) < 0:
            if self.buffer.startswith((b"\r\n", b"\n")):  # allowed before a request
                del self.buffer[:1 + self.buffer.startswith(b"\r")]
                continue
            if not_http(self.buffer):
                raise RequestError(HTTPStatus.BAD_REQUEST, "not an HTTP request")
            if len(self.buffer) > limit:
                raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
            if not await self.more():
                if self.buffer:
                    raise asyncio.IncompleteReadError(bytes(self.buffer), None)
                return None
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    async def skip(self, count: int) -> None:
        """Drop ``count`` bytes of body: they must never be read as a request."""
        while len(self.buffer) < count:
            if not await self.more():
                raise asyncio.IncompleteReadError(bytes(self.buffer), count)
        del self.buffer[:count]


class HttpFront:
    """Serves ``app`` on a bound, listening socket from one event-loop thread."""

    def __init__(self, sock: socket.socket, app: App, tls: TlsSource, limits: Limits,
                 server: str) -> None:
        self._sock = sock
        self._app = app
        self._tls = tls
        self._limits = limits
        self._server = server
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        # Those waiting on their client, longest-waiting first: the next to make room.
        self._waiting: OrderedDict[asyncio.Task[None], _Conn] = OrderedDict()
        self._told: set[str] = set()
        self._freed = asyncio.Event()
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
            for conn in list(self._conns.values()):
                conn.evict()
            self.loop.run_until_complete(
                asyncio.gather(accept, *self._conns, return_exceptions=True))
            self.loop.close()

    async def _accept_forever(self) -> None:
        self._sock.setblocking(False)
        while True:
            await self._readable()
            await self._accept_batch()

    async def _accept_batch(self, most: int = 256) -> None:
        """Accept what is queued (up to ``most``), making room at the cap."""
        for _ in range(most):
            if len(self._conns) >= self._limits.max_connections and not self._make_room():
                self._freed.clear()
                await self._freed.wait()  # every connection is being answered: queue in backlog
                return
            try:
                client, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:  # EMFILE and friends: the kernel keeps the queue meanwhile
                self.once("accept", "accepting a connection failed (%s); retrying", error)
                await asyncio.sleep(0.1)
                return
            task = self.loop.create_task(self._serve(client, _peer(address)))
            self._conns[task] = self._waiting[task] = _Conn(client, task)
            task.add_done_callback(self._forget)

    async def _readable(self) -> None:
        ready: asyncio.Future[None] = self.loop.create_future()
        fd = self._sock.fileno()
        self.loop.add_reader(fd, _settle, ready)
        try:
            await ready
        finally:
            self.loop.remove_reader(fd)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest on its client; False if none waits."""
        if not self._waiting:
            return False
        task, victim = self._waiting.popitem(last=False)
        del self._conns[task]
        victim.evict()
        return True

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._conns.pop(task, None)
        self._waiting.pop(task, None)
        self._freed.set()

    def _waits(self, conn: _Conn | None, waiting: bool) -> None:
        """Mark ``conn`` as waiting on its client (evictable) or being answered (not)."""
        if conn is None or conn.task not in self._conns:
            return
        if waiting:
            self._waiting[conn.task] = conn
            self._waiting.move_to_end(conn.task)
        else:
            self._waiting.pop(conn.task, None)

    async def _serve(self, client: socket.socket, peer: str) -> None:
        task = asyncio.current_task()
        conn = self._conns.get(task) if task is not None else None
        if conn is not None:
            conn.started = True
        deadline = self.loop.time() + self._limits.header_timeout
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await self._open(client)
            if conn is not None:
                conn.transport = writer.transport
            await self._exchange(_Wire(reader), writer, conn, peer, deadline)
            writer.close()  # flushes what is queued (and TLS close_notify), then closes
            async with asyncio.timeout(self._limits.write_timeout):
                await writer.wait_closed()
        except _CLIENT_GONE:
            pass  # the client went away or ran out of time: nothing to tell anyone
        finally:
            if writer is not None:
                writer.transport.abort()
            client.close()

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

    async def _exchange(self, wire: _Wire, writer: asyncio.StreamWriter, conn: _Conn | None,
                        peer: str, deadline: float) -> None:
        """Requests one after another until either side closes."""
        while True:
            self._waits(conn, True)
            try:
                request = await self._read(wire, peer, deadline)
            except RequestError as bad:
                answer = Response(bad.status, f"{bad.reason}\n".encode(), close=True)
                await self._write(writer, answer, head_only=False, close=True)
                return
            if request is None:
                return
            self._waits(conn, False)
            response = await self._answer(request)
            close = response.close or not request.keep_alive
            await self._write(writer, response, request.method == "HEAD", close)
            if close:
                return
            async with asyncio.timeout(self._limits.idle_timeout):
                if not wire.buffer and not await wire.more():
                    return
            deadline = self.loop.time() + self._limits.header_timeout

    async def _read(self, wire: _Wire, peer: str, deadline: float) -> Request | None:
        """The next request, its body read and dropped; None at a clean end."""
        async with asyncio.timeout_at(deadline):
            head = await wire.head(self._limits.max_head_bytes)
            if head is None:
                return None
            request = parse_head(head, peer)
            if request.body_length > self._limits.max_body_bytes:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "no endpoint takes a body")
            await wire.skip(request.body_length)
        return request

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
        body = memoryview(b"" if head_only else response.body)
        async with asyncio.timeout(self._limits.write_timeout):
            for start in range(0, len(body), _CHUNK):
                writer.write(body[start:start + _CHUNK])
                await writer.drain()  # waits while more than the high-water mark is queued
            await writer.drain()

    def once(self, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message`` the first time ``kind`` happens: a flood must not flood the log."""
        if kind not in self._told:
            self._told.add(kind)
            log.warning(message, *args, exc_info=exc_info)

    def _loop_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """asyncio's own reports: a client's failure is not news; anything else is said once."""
        error = context.get("exception")
        if isinstance(error, OSError | asyncio.CancelledError):
            return
        self.once(f"loop:{type(error).__name__}", "HTTP front: %s (%r)",
                  context.get("message"), error)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _peer(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""
