"""HTTP details of API calls: the session's settings on every call, the URL, statuses,
Retry-After, and why a call got no answer in the words an operator looks for."""

from __future__ import annotations

import email.utils
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from exporter.api.errors import ApiError
from exporter.api.transport import (
    FormPoster,
    _retry_after,
    check_status,
    failure_reason,
    host_of,
    pooled_session,
    unreachable_reason,
    with_action,
)

NOW = 1_700_000_000.0
HOST = "api.example.test"


# -- the session and the poster ------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["https://api.example.test/", "http://api.example.test/"])
def test_the_pool_holds_as_many_connections_as_calls_run_at_once(endpoint: str) -> None:
    session = pooled_session(endpoint, 48, {})
    adapter = session.get_adapter(endpoint)
    assert adapter is session.get_adapter("https://other.example.test/")
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 48  # type: ignore[attr-defined]
    session.close()


def test_the_curl_ca_bundle_is_the_fallback_of_the_requests_one() -> None:
    session = pooled_session(HOST, 1, {"CURL_CA_BUNDLE": "/curl.pem"})
    assert session.verify == "/curl.pem"
    both = pooled_session(HOST, 1, {"CURL_CA_BUNDLE": "/curl.pem",
                                    "REQUESTS_CA_BUNDLE": "/requests.pem"})
    assert both.verify == "/requests.pem"


def test_each_proxy_variable_in_either_case_is_taken() -> None:
    session = pooled_session("https://api.example.test/", 1, {
        "http_proxy": "http://plain:3128", "HTTPS_PROXY": "http://tls:3128",
        "all_proxy": "socks5://any:1080"})
    assert session.proxies == {"http": "http://plain:3128", "https": "http://tls:3128",
                               "all": "socks5://any:1080"}


def test_a_post_goes_over_the_pool_to_a_real_server_and_streams_its_answer() -> None:
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps({"RetCode": 0}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
    session = pooled_session(endpoint, 2, {})
    try:
        poster = FormPoster(session)
        for i in range(2):
            with poster.post(with_action(endpoint, "GetX"), f"a={i}", 5) as response:
                assert response.raw.tell() == 0  # streamed: nothing read yet
                assert response.json() == {"RetCode": 0}
        assert seen == [b"a=0", b"a=1"]
    finally:
        session.close()
        server.shutdown()
        server.server_close()


class Recording(BaseAdapter):
    """An adapter that answers 200 and keeps what each send was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(
            self, request: requests.PreparedRequest, stream: bool = False,
            timeout: float | tuple[float, float] | tuple[float, None] | None = None,
            verify: bool | str = True,
            cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
            proxies: Mapping[str, str] | None = None) -> requests.Response:
        self.sent.append((request, {"stream": stream, "timeout": timeout, "verify": verify,
                                    "proxies": proxies, "cert": cert}))
        answer = requests.Response()
        answer.status_code = 200
        return answer

    def close(self) -> None:
        pass


@pytest.fixture
def recorded() -> Iterator[tuple[requests.Session, Recording]]:
    session = pooled_session("https://api.example.test/", 4,
                             {"HTTPS_PROXY": "http://proxy:3128", "REQUESTS_CA_BUNDLE": "/ca.pem"})
    session.cert = "/client.pem"
    adapter = Recording()
    session.mount("https://", adapter)
    yield session, adapter
    session.close()


def test_every_post_carries_the_sessions_settings_and_streams(
        recorded: tuple[requests.Session, Recording]) -> None:
    session, adapter = recorded
    poster = FormPoster(session)
    for body in ("a=1", "a=2"):
        poster.post("https://api.example.test/?Action=X", body, 2.5)
    assert [(r.method, r.url, r.body, r.headers["Content-Type"]) for r, _ in adapter.sent] == [
        ("POST", "https://api.example.test/?Action=X", body,
         "application/x-www-form-urlencoded") for body in ("a=1", "a=2")]
    for _, kwargs in adapter.sent:
        assert kwargs == {"stream": True, "timeout": 2.5, "verify": "/ca.pem",
                          "proxies": {"https": "http://proxy:3128"}, "cert": "/client.pem"}


@pytest.mark.parametrize(("verify", "sent"), [(None, True), (False, False), (True, True)])
def test_a_session_without_a_verify_setting_still_verifies(
        recorded: tuple[requests.Session, Recording], verify: bool | None, sent: bool) -> None:
    session, adapter = recorded
    session.verify = verify
    FormPoster(session).post("https://api.example.test/", "a=1", 1.0)
    assert adapter.sent[0][1]["verify"] is sent


# -- the URL and the host ------------------------------------------------------------------

def test_the_action_is_added_to_the_endpoints_own_query_blanks_kept() -> None:
    assert with_action("https://api.example.test/?Region=cn-bj2&flag=", "GetX") == (
        "https://api.example.test/?Region=cn-bj2&flag=&Action=GetX")


@pytest.mark.parametrize(("endpoint", "shown"), [
    ("https://user:secret@api.example.test:8443/path", "api.example.test:8443"),
    ("https://api.example.test/", "api.example.test"),
    ("https:///path", "the API endpoint"),
])
def test_the_host_is_shown_without_userinfo(endpoint: str, shown: str) -> None:
    assert host_of(endpoint) == shown


# -- statuses ------------------------------------------------------------------------------

def answer(status: int, reason: str | None = None, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = reason  # type: ignore[assignment]
    response.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return response


def refused(response: requests.Response) -> ApiError:
    with pytest.raises(ApiError) as info:
        check_status(response, HOST, NOW)
    return info.value


@pytest.mark.parametrize(("status", "transient"), [
    (300, False), (404, False), (408, True), (409, False), (500, True), (503, True)])
def test_any_status_but_2xx_fails_408_and_5xx_are_retried(status: int, transient: bool) -> None:
    err = refused(answer(status))
    assert (err.category, err.http_status, err.transient, err.throttled) == (
        "http", status, transient, False)
    check_status(answer(299), HOST, NOW)


def test_the_message_names_status_reason_and_host_with_or_without_a_reason() -> None:
    assert str(refused(answer(503, "Service Unavailable"))) == (
        f"HTTP 503 Service Unavailable from {HOST}")
    assert str(refused(answer(503, ""))) == f"HTTP 503 from {HOST}"
    assert str(refused(answer(502))) == f"HTTP 502 from {HOST}"


def test_only_a_429_is_throttled_and_only_its_retry_after_is_taken() -> None:
    err = refused(answer(429, "Too Many Requests", Retry_After="7"))
    assert (err.transient, err.throttled, err.retry_after) == (True, True, 7.0)
    assert refused(answer(503, Retry_After="7")).retry_after is None


# -- Retry-After ---------------------------------------------------------------------------

def http_date(at: float) -> str:
    return email.utils.formatdate(at, usegmt=True)


def test_a_date_in_the_past_asks_for_no_wait() -> None:
    assert _retry_after(http_date(NOW - 30), NOW) == 0.0


@pytest.fixture
def far_east() -> Iterator[None]:
    """The host's local time zone 8 h ahead of UTC."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "Asia/Shanghai")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("far_east")
def test_http_dates_are_utc_whatever_the_hosts_zone() -> None:
    assert _retry_after(http_date(NOW + 30).replace("GMT", "-0000"), NOW) == 30.0
    assert _retry_after(http_date(NOW + 30), NOW) == 30.0


def test_a_date_of_up_to_40_characters_is_read() -> None:
    date = http_date(NOW + 30).replace(" ", "   ").replace("   ", "    ", 1)
    assert len(date) == 40
    assert _retry_after(date, NOW) == 30.0
    assert _retry_after(date.replace("   ", "    ", 1), NOW) is None  # 41: garbage, not parsed


# -- why no answer came --------------------------------------------------------------------

def chain(*errors: BaseException) -> BaseException:
    """``errors[0]``, each raised while handling the next (implicit chaining)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__context__ = inner
    return errors[0]


def test_the_innermost_system_text_is_the_reason() -> None:
    err = chain(requests.ConnectionError("wrapper"), OSError("wrapped"),
                ConnectionResetError(104, "Connection reset by peer"))
    assert failure_reason(err) == "Connection reset by peer"


def test_an_error_that_explains_nothing_is_named_by_its_type() -> None:
    assert failure_reason(requests.ConnectionError("boom")) == "ConnectionError"
    assert failure_reason(chain(requests.Timeout("t"), ValueError("v"))) == "ValueError"


def test_urllib3_keeps_the_cause_in_reason() -> None:
    inner = NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    inner.__cause__ = ConnectionRefusedError(111, "Connection refused")
    outer = requests.ConnectionError(MaxRetryError(None, "/", reason=inner))  # type: ignore[arg-type]
    outer.__context__ = outer.args[0]  # a context chain and a reason
    assert unreachable_reason(outer) == "connection refused"
    alone = MaxRetryError(None, "/", reason=ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]
    assert failure_reason(alone) == "Connection refused"


def test_an_error_that_is_its_own_cause_ends_the_walk() -> None:
    err = OSError("loop")
    err.__context__ = ValueError("v")
    err.__context__.__context__ = err
    assert failure_reason(err) == "ValueError"


@pytest.mark.parametrize(("cause", "said"), [
    (ssl.SSLError(1, "certificate verify failed"), "TLS failed: certificate verify failed"),
    (socket.gaierror(-2, "Name or service not known"),
     "name not resolved: Name or service not known"),
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (TimeoutError(110, "Connection timed out"), "Connection timed out"),
])
def test_why_no_answer_came_in_an_operators_words(cause: OSError, said: str) -> None:
    err = requests.ConnectionError("wrapper")
    err.__cause__ = cause
    assert unreachable_reason(err) == said

