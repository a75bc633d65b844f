"""The exporter's own metrics: what it costs on the API and why it fails."""

from __future__ import annotations

import math
import platform
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__

_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CYCLE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# (outcome, retcode) of API calls whose labels are known before any call: success, the failures
# that never carry a RetCode, and throttling (UminferApiThrottled watches it).
_KNOWN_CALL_OUTCOMES = (("success", "0"), ("network", "none"), ("timeout", "none"),
                        ("http", "none"), ("invalid_response", "none"), ("retcode", "153"))


class SelfMetrics:
    """Self-metrics registered into the registry handed in (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.api_requests = Counter(
            "uminfer_api_requests", "Number of API calls made, by outcome and RetCode.",
            ["outcome", "retcode"], registry=registry)
        self.api_duration = Histogram(
            "uminfer_api_request_duration_seconds", "Duration of API calls in seconds.",
            buckets=_CALL_BUCKETS, registry=registry)
        self.cycle_duration = Histogram(
            "uminfer_poll_duration_seconds", "Duration of poll cycles in seconds.",
            buckets=_CYCLE_BUCKETS, registry=registry)
        self.cycle_overruns = Counter(
            "uminfer_poll_overruns", "Number of poll cycles that took longer than poll.interval.",
            registry=registry)
        self.poll_errors = Counter(
            "uminfer_poll_errors",
            "Number of unexpected errors in the poll loop, by stage; the loop goes on.",
            ["stage"], registry=registry)
        self.targets = Gauge(
            "uminfer_targets", "Number of targets this exporter polls.", registry=registry)
        self.rate_limit = Gauge(
            "uminfer_api_rate_limit_requests_per_second",
            "Current request rate limit in requests per second, summed over accounts (lowered "
            "on throttling; 0 = none).",
            registry=registry)
        self.backfill_skipped = Counter(
            "uminfer_backfill_skipped_seconds",
            "Seconds of usage not counted because they lay beyond state.max_backfill.",
            registry=registry)
        self.api_clock_offset = Gauge(
            "uminfer_api_clock_offset_seconds",
            "The API's clock (from the Date header of its answers) minus the local clock, in "
            "seconds; NaN until the first answer. Periods close by the API's clock.",
            registry=registry)
        self.api_bucket = Gauge(
            "uminfer_api_bucket_seconds",
            "The width of the API's time buckets in seconds that fits the Usages timestamps of its "
            "recent answers (86400: a provider day); NaN while none fits. Information only: "
            "counting does not depend on it.",
            registry=registry)
        self.budget_seeding = Gauge(
            "uminfer_budget_seeding_targets",
            "New targets whose usage from their budgets' period start to where their counting "
            "began is still being read (docs/cost.md, Budgets); their budgets show less until 0.",
            registry=registry)
        self.additivity_errors = Counter(
            "uminfer_api_additivity_errors",
            "Number of audit reads over settled periods that came out below the sum of the "
            "periods' final readings (windows rounded outward, or usage lowered after settling).",
            registry=registry)
        self.additivity_excess = Counter(
            "uminfer_api_additivity_excess_tokens",
            "Tokens by which the periods' final readings exceeded one read over them, summed over "
            "additivity errors: how far the counters may be too high.", registry=registry)
        self.labels_off_grid = Counter(
            "uminfer_api_labels_off_grid",
            "Number of answers that labelled usage in a bucket straddling a midnight of "
            "api.time_zone: the cloud's days start in another zone (the log says which label).",
            registry=registry)
        self.state_writes = Counter(
            "uminfer_state_writes", "Number of state file writes, by outcome.", ["outcome"],
            registry=registry)
        self.state_saved = Gauge(
            "uminfer_state_last_write_success_timestamp_seconds",
            "Unix time in seconds of the latest successful state file write.", registry=registry)
        # Label sets known in advance are exported from 0, so increase() and alerts see the
        # first event (a series born at 1 has no increase).
        for outcome in ("success", "error"):
            self.state_writes.labels(outcome)
        for outcome, retcode in _KNOWN_CALL_OUTCOMES:
            self.api_requests.labels(outcome, retcode)
        self.reload_success = Gauge(
            "uminfer_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or failed (0).",
            registry=registry)
        self.reload_timestamp = Gauge(
            "uminfer_config_last_reload_success_timestamp_seconds",
            "Unix time in seconds of the last successful configuration load.", registry=registry)
        build = Gauge(
            "uminfer_exporter_build_info", "Build information; the value is always 1.",
            ["version", "python_version"], registry=registry)
        build.labels(__version__, platform.python_version()).set(1)

    def watch(self, *, clock_offset: Callable[[], float | None], bucket: Callable[[], int | None],
              rate: Callable[[], float], seeding: Callable[[], int],
              targets: Callable[[], int]) -> None:
        """Gauges read at scrape time from the parts that know them (None: not known yet)."""
        self.api_clock_offset.set_function(lambda: _known(clock_offset()))
        self.api_bucket.set_function(lambda: _known(bucket() or None))
        self.rate_limit.set_function(rate)
        self.budget_seeding.set_function(seeding)
        self.targets.set_function(targets)

    def reloaded(self, ok: bool, now: float) -> None:
        """A config was put in force (the start counts as one), or a reload was rejected."""
        self.reload_success.set(1 if ok else 0)
        if ok:
            self.reload_timestamp.set(now)

    def additivity_error(self, excess_tokens: int) -> None:
        """An audit found the whole below its parts (api.buckets' BucketObserver)."""
        self.additivity_errors.inc()
        self.additivity_excess.inc(excess_tokens)

    def off_grid(self) -> None:
        """An answer's label contradicted the grid (api.buckets' BucketObserver)."""
        self.labels_off_grid.inc()

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        """Record one API call attempt (the client's CallObserver)."""
        self.api_requests.labels(outcome, retcode).inc()
        self.api_duration.observe(seconds)



def _known(value: float | None) -> float:
    return math.nan if value is None else value
