"""Signed API calls with retries, full-jitter backoff and the shared rate limit, in a deadline."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import urlencode

import requests

from exporter.api.answers import AnswerReader
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.ratelimit import RateLimiter
from exporter.api.response import parse_reading
from exporter.api.signing import sign
from exporter.api.transport import (
    FormPoster,
    check_status,
    failure_reason,
    host_of,
    unreachable_reason,
    with_action,
)
from exporter.config import ApiConfig, Target
from exporter.core.clock import Clock
from exporter.core.grid import LONGEST
from exporter.core.usage import Reading

ACTION = "GetUMInferTokenUsage"
T = TypeVar("T")
MAX_SPAN = LONGEST  # a provider day at its longest (see core.grid)
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
        api_clock: ApiClock | None = None,
    ) -> None:
        self._api = api
        self._session = session
        self._poster = FormPoster(session)
        self._clock = clock
        self._rng = rng
        self._limiter = limiter
        self._observer = observer
        self._api_clock = api_clock  # told the Date of every answer
        self._host = host_of(api.endpoint)
        self._answers = AnswerReader(self._host)
        self._log = logging.getLogger(__name__)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        """Totals for ``[start, end]`` (inclusive Unix seconds) and the bucket labels they came
        in; retry transient errors until ``deadline`` (monotonic), then raise the last
        ApiError."""
        if not 0 <= end - start < MAX_SPAN:
            raise ValueError(f"need start <= end < start + {MAX_SPAN}, got [{start}, {end}]")
        return self.call(_params(target, start, end), parse_reading, deadline, target.ident)

    def call(self, params: dict[str, object], parse: Callable[[object], T], deadline: float,
             subject: str = "") -> T:
        """Sign ``params`` (which name the Action), POST them, and ``parse`` the JSON body;
        retry transient errors until ``deadline`` (monotonic), then raise the last ApiError."""
        form = sign(params, self._api.public_key, self._api.private_key)
        url = with_action(self._api.endpoint, str(params["Action"]))
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
                last = _detached(err.naming(str(params["Action"])))
                pause = self._pause(last, attempt, deadline)
                if pause is None:
                    raise last from None
            # Outside the except block, and with the error detached from its traceback: the
            # frames of a failed attempt hold its answer (up to 4 MiB and its parse), which
            # must not stay in memory through the pause.
            self._log.debug("retrying %s %s in %.2fs after: %s", params["Action"], subject,
                            pause, last)
            self._clock.sleep(pause)
            attempt += 1

    def sync_clock(self, deadline: float) -> str | None:
        """Learn the API's clock from one plain GET of the endpoint while no answer has told it;
        why the endpoint did not answer, or None.

        Any answer will do, an error page included: only its ``Date`` header is read. Without
        this, a restarted exporter whose clock is behind the API's could plan no read at all
        (its saved periods lie in its local future) and so never hear the API's time.
        """
        if self._api_clock is None or self._api_clock.known:
            return None
        left = deadline - self._clock.monotonic()
        if left <= 0 or not self._limiter.acquire(deadline):
            return None
        timeout = min(self._api.timeout, left)
        try:
            response = self._session.get(self._api.endpoint, allow_redirects=False, stream=True,
                                         timeout=timeout)
        except requests.Timeout:
            return f"no answer from {self._host} within {timeout:.1f}s"
        except requests.RequestException as exc:
            self._log.debug("API clock not learned from %s: %s", self._host,
                            failure_reason(exc))
            return f"cannot reach {self._host}: {unreachable_reason(exc)}"
        with response:
            self._api_clock.observe(response.headers.get("Date"), self._clock.monotonic())
        return None

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
            response = self._poster.post(url, urlencode(form), timeout)
        except requests.Timeout:
            raise ApiError("timeout", f"no answer from {self._host} within {timeout:.1f}s",
                           transient=True) from None
        except requests.RequestException as exc:
            raise ApiError("network", f"cannot reach {self._host}: {unreachable_reason(exc)}",
                           transient=True) from None
        received = self._clock.monotonic()
        with response:
            check_status(response, self._host, self._clock.time())
            # The API's own answers tell its time; an error page from a gateway in front of it
            # (a node with its own clock) is no sample (the start's plain GET aside).
            if self._api_clock is not None:
                self._api_clock.observe(response.headers.get("Date"), received)
            return self._answers.read(response, timeout)


def _detached(error: ApiError) -> ApiError:
    """``error`` without the traceback and chained errors that keep a failed attempt's frames
    (and so its answer) alive."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _params(target: Target, start: int, end: int) -> dict[str, object]:
    params: dict[str, object] = {"Action": ACTION, "KeyId": target.key, "Model": target.model,
                                 "StartTime": start, "EndTime": end}
    if target.project:  # blank means the default project; sending "" could mean something else
        params["ProjectId"] = target.project
    return params
