"""Signed API calls with retries, full-jitter backoff and the shared rate limit, in a deadline."""

from __future__ import annotations

import datetime
import email.utils
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import should_bypass_proxies

from exporter.clock import Clock
from exporter.config import ApiConfig, Target
from exporter.errors import ApiError
from exporter.ratelimit import RateLimiter
from exporter.response import invalid, parse_usage
from exporter.signing import sign
from exporter.usage import Totals

ACTION = "GetUMInferTokenUsage"
T = TypeVar("T")
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MAX_SPAN = 86400
BACKOFF_BASE = 0.5
THROTTLED_BACKOFF_BASE = 2.0
BACKOFF_CAP = 30.0
# A retry with less time than this left could not finish; give up instead.
MIN_ATTEMPT_SECONDS = 0.5


class CallObserver(Protocol):
    """Told about every HTTP attempt, for self-metrics."""

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        """``outcome`` is "success" or an ApiError category; ``retcode`` a label value."""
        ...


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


def _environ_proxies(endpoint: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies requests would pick for ``endpoint`` from ``environ`` (NO_PROXY honoured)."""
    names = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    variables = {n: v for n in names for k, v in environ.items() if k.lower() == n}
    if should_bypass_proxies(endpoint, no_proxy=variables.get("no_proxy")):
        return {}
    return {scheme: url for scheme, name in (("http", "http_proxy"), ("https", "https_proxy"),
                                             ("all", "all_proxy"))
            if (url := variables.get(name))}


class ApiClient:
    """Makes signed calls of any action and reads usage totals; thread-safe, one pooled session.

    Every call, whatever its action, goes through the same rate limiter, retry policy and
    observer, so the self-metrics show everything the exporter costs on the API.
    """

    # The six collaborators are the agreed seam; keywords would not make the call clearer.
    def __init__(  # noqa: PLR0917
        self,
        api: ApiConfig,
        session: requests.Session,
        clock: Clock,
        rng: random.Random,
        limiter: RateLimiter,
        observer: CallObserver,
    ) -> None:
        self._api = api
        self._session = session
        self._clock = clock
        self._rng = rng
        self._limiter = limiter
        self._observer = observer
        self._host = _host(api.endpoint)
        self._log = logging.getLogger(__name__)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Totals:
        """Totals for ``[start, end]`` (inclusive Unix seconds); retry transient errors until
        ``deadline`` (monotonic), then raise the last ApiError."""
        if not 0 <= end - start < MAX_SPAN:
            raise ValueError(f"need start <= end < start + {MAX_SPAN}, got [{start}, {end}]")
        return self.call(_params(target, start, end), parse_usage, deadline, target.ident)

    def call(self, params: dict[str, object], parse: Callable[[object], T], deadline: float,
             subject: str = "") -> T:
        """Sign ``params`` (which name the Action), POST them, and ``parse`` the JSON body;
        retry transient errors until ``deadline`` (monotonic), then raise the last ApiError."""
        form = sign(params, self._api.public_key, self._api.private_key)
        url = _with_action(self._api.endpoint, str(params["Action"]))
        last: ApiError | None = None
        attempt = 0
        while True:
            timeout = self._slot(deadline)
            if timeout is None:
                # The call's own failure says more than "ran out of time" does.
                raise last or ApiError("timeout", "deadline reached before the first call",
                                       transient=True)
            try:
                return self._attempt(url, form, parse, timeout)
            except ApiError as err:
                last = err
                pause = self._pause(err, attempt, deadline)
                if pause is None:
                    raise
                self._log.debug("retrying %s %s in %.2fs after: %s", params["Action"], subject,
                                pause, err)
                self._clock.sleep(pause)
                attempt += 1

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    def _pause(self, err: ApiError, attempt: int, deadline: float) -> float | None:
        """How long to wait before retrying ``err``, or None when it must not be retried."""
        if not err.transient:
            return None
        if err.throttled:
            self._limiter.throttled()
        base = THROTTLED_BACKOFF_BASE if err.throttled else BACKOFF_BASE
        # min() on the exponent keeps 2**attempt from overflowing a float on long deadlines.
        pause = self._rng.uniform(0, min(BACKOFF_CAP, base * 2 ** min(attempt, 32)))
        if err.retry_after is not None:
            pause = max(pause, err.retry_after)
        if self._clock.monotonic() + pause + MIN_ATTEMPT_SECONDS > deadline:
            return None
        return pause

    def _slot(self, deadline: float) -> float | None:
        """Wait for the rate limiter; the attempt's timeout, or None if the deadline came first."""
        if not self._limiter.acquire(deadline):
            return None
        left = deadline - self._clock.monotonic()
        return min(self._api.timeout, left) if left > 0 else None

    def _attempt(self, url: str, form: dict[str, str], parse: Callable[[object], T],
                 timeout: float) -> T:
        """One timed, observed HTTP call."""
        began = self._clock.monotonic()
        try:
            result = parse(self._post(url, form, timeout))
        except ApiError as err:
            self._observer.observe_call(err.category, err.label, self._clock.monotonic() - began)
            raise err.redacted((self._api.private_key, form["Signature"])) from None
        self._observer.observe_call("success", "0", self._clock.monotonic() - began)
        self._limiter.succeeded()
        return result

    def _post(self, url: str, form: dict[str, str], timeout: float) -> object:
        """POST the signed form and decode the JSON answer; every failure becomes an ApiError."""
        try:
            # Encoded here, not by requests: its encoder walks runtime-checked protocols and
            # costs more CPU than the rest of the call's Python put together.
            response = self._session.post(url, data=urlencode(form), headers=_FORM,
                                          timeout=timeout)
        except requests.Timeout:
            raise ApiError("timeout", f"no answer from {self._host} within {timeout:.1f}s",
                           transient=True) from None
        except requests.RequestException as exc:
            raise ApiError("network", f"cannot reach {self._host}: {_reason(exc)}",
                           transient=True) from None
        with response:
            _check_status(response, self._host, self._clock.time())
            try:
                body: object = response.json()
            except ValueError:
                raise invalid(f"body from {self._host} is not JSON "
                              f"(HTTP {response.status_code}, {len(response.content)} bytes, "
                              f"Content-Type {response.headers.get('Content-Type')!r})") from None
        return body


def _params(target: Target, start: int, end: int) -> dict[str, object]:
    params: dict[str, object] = {"Action": ACTION, "KeyId": target.key, "Model": target.model,
                                 "StartTime": start, "EndTime": end}
    if target.project:  # blank means the default project; sending "" could mean something else
        params["ProjectId"] = target.project
    return params


def _with_action(endpoint: str, action: str) -> str:
    """The endpoint with ``?Action=…`` appended, as the Go SDK does (helps gateway logs)."""
    parts = urlsplit(endpoint)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("Action", action)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _host(endpoint: str) -> str:
    """Host and port only, for messages: the endpoint may carry userinfo."""
    parts = urlsplit(endpoint)
    host = parts.hostname or "the API endpoint"
    return f"{host}:{parts.port}" if parts.port else host


def _check_status(response: requests.Response, host: str, now: float) -> None:
    """Raise for any HTTP status but 2xx: 408, 429 and 5xx are transient, 429 throttled."""
    status = response.status_code
    if 200 <= status < 300:
        return
    throttled = status == 429
    transient = throttled or status == 408 or status >= 500
    retry_after = _retry_after(response.headers.get("Retry-After"), now) if throttled else None
    raise ApiError("http", f"HTTP {status} {response.reason or ''} from {host}".rstrip(),
                   http_status=status, transient=transient, throttled=throttled,
                   retry_after=retry_after)


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _reason(exc: BaseException) -> str:
    """The innermost cause's text (e.g. "Connection refused"), never the request URL."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (
            current.__cause__ or current.__context__)
    for error in reversed(seen):
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    return type(seen[-1]).__name__
