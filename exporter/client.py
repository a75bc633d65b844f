"""One signed GetUMInferTokenUsage call, with retries and full-jitter backoff inside a deadline."""

from __future__ import annotations

import datetime
import email.utils
import logging
import random
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from exporter.clock import Clock
from exporter.config import ApiConfig, Target
from exporter.errors import ApiError
from exporter.ratelimit import RateLimiter
from exporter.response import invalid, parse_usage
from exporter.signing import sign
from exporter.usage import Totals

ACTION = "GetUMInferTokenUsage"
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


class UsageClient:
    """Reads usage totals for one target and interval; thread-safe, one pooled session."""

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
        self._url = _with_action(api.endpoint)
        self._host = _host(api.endpoint)
        self._log = logging.getLogger(__name__)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Totals:
        """Totals for ``[start, end]`` (inclusive Unix seconds); retry transient errors until
        ``deadline`` (monotonic), then raise the last ApiError."""
        if not 0 <= end - start < MAX_SPAN:
            raise ValueError(f"need start <= end < start + {MAX_SPAN}, got [{start}, {end}]")
        form = sign(_params(target, start, end), self._api.public_key, self._api.private_key)
        last: ApiError | None = None
        attempt = 0
        while True:
            timeout = self._slot(deadline)
            if timeout is None:
                # The call's own failure says more than "ran out of time" does.
                raise last or ApiError("timeout", "deadline reached before the first call",
                                       transient=True)
            try:
                return self._attempt(form, timeout)
            except ApiError as err:
                last = err
                pause = self._pause(err, attempt, deadline)
                if pause is None:
                    raise
                self._log.debug("retrying %s in %.2fs after: %s", target.ident, pause, err)
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

    def _attempt(self, form: dict[str, str], timeout: float) -> Totals:
        """One timed, observed HTTP call."""
        began = self._clock.monotonic()
        try:
            totals = self._call(form, timeout)
        except ApiError as err:
            self._observer.observe_call(err.category, err.label, self._clock.monotonic() - began)
            raise err.redacted((self._api.private_key, form["Signature"])) from None
        self._observer.observe_call("success", "0", self._clock.monotonic() - began)
        self._limiter.succeeded()
        return totals

    def _call(self, form: dict[str, str], timeout: float) -> Totals:
        """POST the signed form and parse the answer; every failure becomes an ApiError."""
        try:
            response = self._session.post(self._url, data=form, timeout=timeout)
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
        return parse_usage(body)


def _params(target: Target, start: int, end: int) -> dict[str, object]:
    params: dict[str, object] = {"Action": ACTION, "KeyId": target.key, "Model": target.model,
                                 "StartTime": start, "EndTime": end}
    if target.project:  # blank means the default project; sending "" could mean something else
        params["ProjectId"] = target.project
    return params


def _with_action(endpoint: str) -> str:
    """The endpoint with ``?Action=…`` appended, as the Go SDK does (helps gateway logs)."""
    parts = urlsplit(endpoint)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("Action", ACTION)]
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
