"""HTTP/1.1 on the wire: a strict request-head parser and the response bytes, no I/O.

Strict where leniency lets a request be read two ways (request smuggling): a header name with
space before its colon, folded lines, a bare CR, two different Content-Lengths, or a
Transfer-Encoding are refused, and the connection closes after the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_MAX_HEADERS = 100
# Digits a Content-Length may have: no endpoint takes a body, so anything longer is too large
# (and int() of thousands of digits is slow, then refused by Python itself).
_MAX_LENGTH_DIGITS = 18
_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r?\n", re.IGNORECASE)


class RequestError(Exception):
    """A request that cannot be served; answered with ``status`` and the connection closed."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """A parsed request head; header names are lower case."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...] = ()
    peer: str = ""  # the client's address, for decisions (never for logs)

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((value for key, value in self.headers if key == name), None)

    @property
    def body_length(self) -> int:
        """Bytes of body that follow the head (validated by :func:`parse_head`)."""
        return int(self.header("content-length") or 0)

    @property
    def keep_alive(self) -> bool:
        """Whether the client lets the connection carry another request."""
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass(frozen=True)
class Response:
    """What a route answers. ``body`` and then ``tail`` are sent as they are: ``body`` may be
    the shared cached exposition, and joining the two would copy it for every client (a slow
    reader would hold that copy until the write deadline)."""

    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())
    close: bool = False  # end the connection after this answer
    tail: bytes = b""

    @property
    def length(self) -> int:
        """Content-Length: body and tail."""
        return len(self.body) + len(self.tail)


def not_http(buffer: bytes | bytearray) -> bool:
    """Whether the first byte already rules out a request line (e.g. a TLS ClientHello sent
    to a plain-HTTP port): answer at once instead of waiting out the header deadline."""
    return bool(buffer) and not _TOKEN.fullmatch(buffer[:1])


def head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line that ends a request head, or -1 if none yet."""
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return min(ends) if ends else -1


def announced_body(head: bytes) -> int:
    """The body length a complete head announces, at a glance (no full parse: this runs for
    every connection of a flood); 0 when none, or when the head is refused anyway."""
    found = _LENGTH.search(head)
    return int(found.group(1)) if found else 0


def parse_head(head: bytes, peer: str = "") -> Request:
    """Parse the request line and headers (everything before the blank line)."""
    lines = head.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise RequestError(HTTPStatus.BAD_REQUEST, "empty request")
    method, target, version = _request_line(lines[0])
    headers = tuple(_header(line) for line in lines[1:])
    if len(headers) > _MAX_HEADERS:
        raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")
    request = Request(method, target, version, headers, peer)
    _check_framing(request)
    return request


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed request line")
    if not _VERSION.fullmatch(parts[2]):
        raise RequestError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1")
    target = parts[1]
    if not target.startswith(b"/") or any(c <= 0x20 or c == 0x7F for c in target):
        raise RequestError(HTTPStatus.BAD_REQUEST, "the target must be a path")
    return parts[0].decode("ascii"), target.decode("ascii", "replace"), parts[2].decode("ascii")


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):  # also refuses "Name :" and folded lines
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed header line")
    value = value.strip(b" \t")
    if b"\r" in value or b"\0" in value:
        raise RequestError(HTTPStatus.BAD_REQUEST, "control character in a header")
    return name.decode("ascii").lower(), value.decode("latin-1")


def _check_framing(request: Request) -> None:
    """Only Content-Length bodies, with one unambiguous length."""
    if request.header("transfer-encoding") is not None:
        # No endpoint takes a body; refusing chunked is simpler and safer than decoding it.
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunked")
    lengths = {v.strip() for k, v in request.headers if k == "content-length"}
    if not lengths:
        return
    if len(lengths) > 1 or not all(v.isdigit() and v.isascii() for v in lengths):
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
    if any(len(v) > _MAX_LENGTH_DIGITS for v in lengths):
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "no endpoint takes a body")


def response_head(response: Response, close: bool, server: str) -> bytes:
    """The status line and headers for ``response`` (always HTTP/1.1, as Go answers 1.0 too)."""
    lines = [f"HTTP/1.1 {response.status.value} {response.status.phrase}",
             f"Server: {server}",
             f"Content-Type: {response.content_type}",
             f"Content-Length: {response.length}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
