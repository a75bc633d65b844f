"""HTTP details of API calls: the pooled session, the URL, status handling, Retry-After."""

from __future__ import annotations

import datetime
import email.utils
import re
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import should_bypass_proxies

from exporter.api.errors import ApiError

_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # over 300 years: anything longer is garbage
_MAX_HTTP_DATE = 40  # "Sun, 06 Nov 1994 08:49:37 GMT" is 29


def pooled_session(endpoint: str, pool_size: int, environ: Mapping[str, str]) -> requests.Session:
    """One pooled session for every call. Proxy and CA-bundle variables are read once, here:
    by default requests re-reads the environment (and ~/.netrc) on every call, which was a
    quarter of the exporter's CPU per target poll (see BENCHMARKS.md)."""
    session = requests.Session()
    session.proxies = _environ_proxies(endpoint, environ)
    session.verify = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class FormPoster:
    """POSTs pre-encoded forms through a session's pool and settings (proxies, CA bundle).

    ``Session.post`` redoes, on every call, work an API client never needs: it re-prepares the
    URL and headers, merges cookies and hooks, and handles redirects (a signed POST must not
    follow one anyway). Preparing the request once per URL and handing copies to the session's
    adapter costs a third less CPU per call (see BENCHMARKS.md). Thread-safe.
    """

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self._templates: dict[str, requests.PreparedRequest] = {}

    def post(self, url: str, body: str, timeout: float) -> requests.Response:
        """Send ``body`` (already form-encoded); raises what requests raises.

        The answer is streamed: its body is not read yet, so the caller can stop at a size cap.
        """
        template = self._templates.get(url)
        if template is None:
            request = requests.Request("POST", url, headers=_FORM)
            template = self._templates.setdefault(url, self._session.prepare_request(request))
        prepared = template.copy()
        prepared.prepare_body(body, None)
        session = self._session
        verify = True if session.verify is None else session.verify
        return session.get_adapter(url).send(prepared, stream=True, timeout=timeout,
                                             verify=verify, proxies=session.proxies,
                                             cert=session.cert)


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _environ_proxies(endpoint: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies requests would pick for ``endpoint`` from ``environ`` (NO_PROXY honoured)."""
    names = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    variables = {n: v for n in names for k, v in environ.items() if k.lower() == n}
    if should_bypass_proxies(endpoint, no_proxy=variables.get("no_proxy")):
        return {}
    return {scheme: url for scheme, name in (("http", "http_proxy"), ("https", "https_proxy"),
                                             ("all", "all_proxy"))
            if (url := variables.get(name))}


def with_action(endpoint: str, action: str) -> str:
    """The endpoint with ``?Action=…`` appended, as the Go SDK does (helps gateway logs)."""
    parts = urlsplit(endpoint)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("Action", action)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def host_of(endpoint: str) -> str:
    """Host and port only, for messages: the endpoint may carry userinfo."""
    parts = urlsplit(endpoint)
    host = parts.hostname or "the API endpoint"
    return f"{host}:{parts.port}" if parts.port else host


def check_status(response: requests.Response, host: str, now: float) -> None:
    """Raise for any HTTP status but 2xx: 408, 429 and 5xx are transient, 429 throttled."""
    status = response.status_code
    if 200 <= status < 300:
        return
    throttled = status == 429
    transient = throttled or status == 408 or status >= 500
    retry_after = _retry_after(response.headers.get("Retry-After"), now) if throttled else None
    said = f" {response.reason}" if response.reason else ""  # HTTP/1.1 lets it be empty
    raise ApiError("http", f"HTTP {status}{said} from {host}", http_status=status,
                   transient=transient, throttled=throttled, retry_after=retry_after)


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when unusable."""
    if not value:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):  # ASCII digits only: "²".isdigit() is true too
        return float(text)
    if not text.isascii() or len(text) > _MAX_HTTP_DATE:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
            when = when.replace(tzinfo=datetime.UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        return None


def failure_reason(exc: BaseException) -> str:
    """The innermost cause's text (e.g. "Connection refused"), never the request URL."""
    seen = _causes(exc)
    for error in reversed(seen):
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    return type(seen[-1]).__name__


def unreachable_reason(exc: BaseException) -> str:
    """Why no answer came, in the words an operator looks for: the name did not resolve, the
    connection was refused, TLS failed; then the system's own text."""
    seen, text = _causes(exc), failure_reason(exc)
    if any(isinstance(e, ssl.SSLError) for e in seen):
        return f"TLS failed: {text}"
    if any(isinstance(e, socket.gaierror) for e in seen):
        return f"name not resolved: {text}"
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused"
    return text


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (urllib3 keeps the cause in ``reason``)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (
            current.__cause__ or current.__context__)
    return seen
