"""A fake API for tests that drive the real Service: usage with lateness, outages, listings
that fail or leave keys out, ranges rejected for good, and a Date on every answer (so the
Service learns the API's clock); and a clock whose wall time can be off and step."""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.keys import ApiKey, ApiModel
from exporter.config import Config, Target
from exporter.core.grid import LONGEST
from exporter.core.usage import Reading, Totals
from exporter.polling.workers import WorkerPool
from exporter.service import ApiStack, Service
from exporter.simulator.buckets import BucketPolicy

DISCOVERED = ("d1", "d2", "d3")


class SkewClock:
    """Monotonic time runs with the API's; the local wall clock is off by ``skew``, and steps."""

    def __init__(self, api_start: float, skew: float) -> None:
        self._mono = 1_000.0
        self._api0 = api_start - self._mono
        self.skew = skew

    def time(self) -> float:
        return self._mono + self._api0 + self.skew

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self._mono += max(0.0, seconds)

    def api(self) -> float:
        """The API's true time."""
        return self._mono + self._api0

    def advance(self, seconds: float) -> None:
        self._mono += seconds


@dataclass(frozen=True)
class Use:
    ts: int
    visible_at: int
    tokens: int


class FakeApi:
    """Usage per ident, visible from ``visible_at``; outages, failing or partial listings, and
    ranges rejected for good. Every answer carries the API's Date."""

    def __init__(self, clock: SkewClock) -> None:
        self.clock = clock
        self.uses: dict[str, list[Use]] = {}
        self.down = False
        self.listing = "ok"  # "ok" | "fail" | "partial"
        self.hidden: set[str] = set()
        self.reject_before = 0  # reads starting before this fail with a permanent RetCode
        # How the API buckets time (None: exact timestamps, no Usages rows at all).
        self.buckets: BucketPolicy | None = None
        self.api_clock: ApiClock | None = None
        self.observers: list[ApiClock] = []  # more services told every Date (a pair)
        # Answers whose Date is off by this much (a stray node, a gateway's error page), while
        # ``stray_answers`` lasts; ``stray`` draws each answer's offset when set.
        self.stray_answers = 0
        self.stray_offset = 0
        self.stray: Callable[[], int] | None = None

    def _answer(self) -> None:
        offset = 0
        if self.stray_answers > 0:
            self.stray_answers -= 1
            offset = self.stray_offset
        elif self.stray is not None:
            offset = self.stray()
        date = email.utils.formatdate(self.clock.api() + offset, usegmt=True)
        for clock in [self.api_clock, *self.observers]:  # an error page carries a Date too
            if clock is not None:
                clock.observe(date, self.clock.monotonic())
        if self.down:
            raise ApiError("network", "API down", transient=True)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self._answer()
        assert 0 <= end - start < LONGEST  # at most a provider day
        if start < self.reject_before:
            raise ApiError("retcode", "RetCode 230: invalid parameter", retcode=230)
        now = self.clock.api()
        policy = self.buckets
        first, last = (start, end) if policy is None else policy.event_range(start, end)
        counted = [u for u in self.uses.get(target.ident, ())
                   if first <= u.ts <= last and u.visible_at <= now]
        n = sum(u.tokens for u in counted)
        labels = () if policy is None or not policy.rows else tuple(
            sorted({policy.label(u.ts) for u in counted}))
        return Reading(Totals(input_tokens=n, tokens=n), labels)

    def sync_clock(self, deadline: float) -> None:
        with contextlib.suppress(ApiError):
            self._answer()

    def close(self) -> None:
        pass

    def list_keys(self, project: str, deadline: float) -> list[ApiKey]:
        self._answer()
        if self.listing == "fail":
            raise ApiError("retcode", "RetCode 150: service unavailable", retcode=150,
                           transient=True)
        keys = [k for k in DISCOVERED if not (self.listing == "partial" and k in self.hidden)]
        return [ApiKey(k, k, 1, False, ("m",)) for k in keys]

    def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
        return []

    def visible(self, ident: str) -> int:
        now = self.clock.api()
        return sum(u.tokens for u in self.uses.get(ident, ()) if u.visible_at <= now)


@contextlib.contextmanager
def running(config: Config, clock: SkewClock, api: FakeApi, workers: int = 2
            ) -> Iterator[Service]:
    """The real Service on ``config`` against ``api`` (which tells it the API's Date), stopped
    (state flushed) on the way out."""
    service = Service(config, clock, CollectorRegistry(), lambda: config,
                      connect=lambda _api: ApiStack(WorkerPool(workers), api, api))
    api.api_clock = service.api_clock
    try:
        yield service
    finally:
        service.stop()
