"""HTTP/1.1 on the wire without a socket: what the head parser accepts and refuses (with the
status and reason a client is answered), and the exact response head."""

from __future__ import annotations

from http import HTTPStatus

import pytest

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


def refusal(head: bytes) -> tuple[HTTPStatus, str]:
    with pytest.raises(RequestError) as raised:
        parse_head(head)
    assert str(raised.value) == raised.value.reason
    return raised.value.status, raised.value.reason


def test_a_request_head_is_parsed_with_lower_case_names_and_trimmed_values() -> None:
    request = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nX-Two:\t b c \t\r\n"
                         b"x-two: second\r\n\r\n", "192.0.2.1")
    assert request == Request("GET", "/metrics?x=1", "HTTP/1.1",
                              (("host", "a"), ("x-two", "b c"), ("x-two", "second")),
                              "192.0.2.1")
    assert (request.path, request.header("x-two"), request.header("absent")) == (
        "/metrics", "b c", None)
    assert request.body_length == 0


def test_a_header_splits_at_its_first_colon_and_trims_only_spaces_and_tabs() -> None:
    request = parse_head(b"GET / HTTP/1.1\r\nHost: example:9866\r\nX-A: XvX\r\n"
                         b"X-B: \x0cv\x0b\r\n")
    assert request.headers == (("host", "example:9866"), ("x-a", "XvX"), ("x-b", "\x0cv\x0b"))
    assert request.peer == ""


def test_bare_lf_line_ends_and_trailing_blank_lines_are_accepted() -> None:
    request = parse_head(b"HEAD / HTTP/1.0\nA: 1\n\n\n")
    assert (request.method, request.target, request.version, request.headers) == (
        "HEAD", "/", "HTTP/1.0", (("a", "1"),))
    assert parse_head(b"GET / HTTP/1.1").headers == ()


def test_the_path_drops_only_the_query() -> None:
    assert Request("GET", "/a?b?c", "HTTP/1.1").path == "/a"
    assert Request("GET", "/a", "HTTP/1.1").path == "/a"


def test_header_values_are_latin1_and_the_target_keeps_its_bytes() -> None:
    request = parse_head(b"GET /\xe9 HTTP/1.1\r\nX: caf\xe9\r\n")
    assert (request.target, request.header("x")) == ("/\ufffd", "caf\xe9")


@pytest.mark.parametrize(("head", "status", "reason"), [
    (b"", HTTPStatus.BAD_REQUEST, "empty request"),
    (b"\r\n\r\n", HTTPStatus.BAD_REQUEST, "empty request"),
    (b"GET  / HTTP/1.1", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b"GET / HTTP/1.1 x", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b"GET /", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b"GET  HTTP/1.1", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b"G(T / HTTP/1.1", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b" / HTTP/1.1", HTTPStatus.BAD_REQUEST, "malformed request line"),
    (b"GET / HTTP/2.0", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1"),
    (b"GET / HTTP/1.2", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1"),
    (b"GET / HTTP/1x1", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1"),
    (b"GET / http/1.1", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1"),
    (b"GET / HTTP/1.1x", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1"),
    (b"GET http://a/ HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET * HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET /a\x00 HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET /a\x1f HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET /a\x7f HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET /a\t HTTP/1.1", HTTPStatus.BAD_REQUEST, "the target must be a path"),
    (b"GET / HTTP/1.1\r\nNo colon\r\n", HTTPStatus.BAD_REQUEST, "malformed header line"),
    (b"GET / HTTP/1.1\r\nName : x\r\n", HTTPStatus.BAD_REQUEST, "malformed header line"),
    (b"GET / HTTP/1.1\r\nA: x\r\n folded\r\n", HTTPStatus.BAD_REQUEST, "malformed header line"),
    (b"GET / HTTP/1.1\r\n: x\r\n", HTTPStatus.BAD_REQUEST, "malformed header line"),
    (b"GET / HTTP/1.1\r\nX: a\rb\r\n", HTTPStatus.BAD_REQUEST, "control character in a header"),
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n", HTTPStatus.BAD_REQUEST,
     "control character in a header"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", HTTPStatus.LENGTH_REQUIRED,
     "send a Content-Length, not chunked"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 1\r\n",
     HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunked"),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n", HTTPStatus.BAD_REQUEST,
     "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n", HTTPStatus.BAD_REQUEST,
     "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n", HTTPStatus.BAD_REQUEST,
     "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length:\r\n", HTTPStatus.BAD_REQUEST,
     "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: \xd9\xa1\r\n", HTTPStatus.BAD_REQUEST,
     "invalid Content-Length"),  # a digit to str.isdigit(), not to HTTP
    (b"POST / HTTP/1.1\r\nContent-Length: " + b"1" * 19 + b"\r\n",
     HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "no endpoint takes a body"),
])
def test_refused_heads_say_why(head: bytes, status: HTTPStatus, reason: str) -> None:
    assert refusal(head) == (status, reason)


def test_a_target_may_hold_any_visible_character() -> None:
    assert parse_head(b"GET /a!b~%20?q=\"x\" HTTP/1.1").target == '/a!b~%20?q="x"'


def test_every_token_character_is_a_method_and_a_header_name() -> None:
    token = b"!#$%&'*+.^_`|~09AZaz-"
    request = parse_head(token + b" / HTTP/1.1\r\n" + token + b": v\r\n")
    assert (request.method, request.headers) == (token.decode(), ((token.decode().lower(), "v"),))
    for bad in b"()<>@,;\\\"/[]?={} ":
        assert refusal(b"GET / HTTP/1.1\r\nA" + bytes([bad]) + b"B: v\r\n") == (
            HTTPStatus.BAD_REQUEST, "malformed header line")


def test_at_most_100_headers() -> None:
    def head(count: int) -> bytes:
        return b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(count))

    assert len(parse_head(head(100)).headers) == 100
    assert refusal(head(101)) == (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")


def test_content_length_up_to_18_digits_and_repeated_alike() -> None:
    request = parse_head(b"POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length:  7 \r\n")
    assert request.body_length == 7
    assert parse_head(b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 18).body_length == \
        10 ** 18 - 1


@pytest.mark.parametrize(("version", "connection", "keep"), [
    ("HTTP/1.1", None, True), ("HTTP/1.1", "close", False), ("HTTP/1.1", "Upgrade, Close", False),
    ("HTTP/1.1", "keep-alive", True), ("HTTP/1.1", "closed", True),
    ("HTTP/1.0", None, False), ("HTTP/1.0", "keep-alive", True),
    ("HTTP/1.0", "foo ,  Keep-Alive ", True), ("HTTP/1.0", "close", False),
])
def test_keep_alive(version: str, connection: str | None, keep: bool) -> None:
    headers = () if connection is None else (("connection", connection),)
    assert Request("GET", "/", version, headers).keep_alive is keep


def test_a_response_defaults_to_plain_text_kept_open() -> None:
    response = Response(HTTPStatus.OK, b"abc", tail=b"de")
    assert (response.content_type, response.headers, response.close, response.length) == (
        "text/plain; charset=utf-8", (), False, 5)


def test_the_response_head() -> None:
    response = Response(HTTPStatus.NOT_FOUND, b"gone\n", "text/html",
                        (("X-A", "1"), ("X-B", "caf\xe9")), tail=b"!")
    assert response_head(response, False, "srv/1") == (
        b"HTTP/1.1 404 Not Found\r\nServer: srv/1\r\nContent-Type: text/html\r\n"
        b"Content-Length: 6\r\nX-A: 1\r\nX-B: caf\xe9\r\n\r\n")
    assert response_head(Response(HTTPStatus.OK), True, "s") == (
        b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def test_not_http_looks_at_the_first_byte_only() -> None:
    assert not not_http(b"")
    assert not not_http(b"G")
    assert not not_http(b"G ")
    assert not not_http(bytearray(b"GET \x16"))
    assert not_http(b"\x16\x03\x01")  # a TLS ClientHello
    assert not_http(b" GET")


@pytest.mark.parametrize(("buffer", "end"), [
    (b"", -1), (b"GET / HTTP/1.1\r\n", -1), (b"GET / HTTP/1.1\r\n\r\n", 18),
    (b"GET / HTTP/1.1\n\n", 16), (b"A\n\nB\r\n\r\n", 3), (b"A\r\n\r\nB\n\n", 5),
    (bytearray(b"A\r\n\r\n"), 5), (b"\r\n\r\n", 4), (b"\n\nA", 2),
    (b"A\r\n\r\nB\r\n\r\n", 5), (b"A\n\nB\n\n", 3),
])
def test_head_end(buffer: bytes, end: int) -> None:
    assert head_end(buffer) == end


@pytest.mark.parametrize(("head", "length"), [
    (b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", 12),
    (b"POST / HTTP/1.1\nCONTENT-LENGTH \t:\t 5 \t\n\n", 5),
    (b"POST / HTTP/1.1\r\nX-Content-Length: 12\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: " + b"1" * 19 + b"\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: " + b"1" * 18 + b"\r\n\r\n", 111111111111111111),
    (b"POST / HTTP/1.1\r\n\r\n", 0),
])
def test_announced_body(head: bytes, length: int) -> None:
    assert announced_body(head) == length
