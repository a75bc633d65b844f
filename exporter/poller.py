"""The poll cycle: plan reads per target, call the API concurrently, record, snapshot."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from exporter.clock import Clock
from exporter.config import Config, Target, Window
from exporter.errors import ApiError
from exporter.ledger import Ledger
from exporter.snapshot import Snapshot, TargetSnapshot
from exporter.usage import ZERO, Totals
from exporter.windows import window_slices
from exporter.workers import WorkerPool

log = logging.getLogger(__name__)

#: Catch-up reads per target per cycle, so one long-down target cannot stall a cycle.
MAX_READS_PER_CYCLE = 8
#: Share of poll.interval over which target starts are spread when pacing applies; the rest is
#: slack for slow calls, retries and catch-up reads, so a paced cycle still ends in its interval.
SPREAD = 0.5


def start_gap(targets: int, interval: float, rate: float) -> float:
    """Seconds between target starts in a steady cycle; 0 starts them all at once.

    Spreading lowers the peak request rate only when a rate limit is set and one call per
    target fits under it within ``SPREAD * interval``: the peak falls from the limit (or
    concurrency / latency) to ``targets / (SPREAD * interval)``. When the limiter would be
    saturated anyway, spreading could only delay polls, so they start at once. Rate 0 means
    the operator opted out of pacing.
    """
    window = SPREAD * interval
    if targets < 2 or rate <= 0 or targets >= rate * window:
        return 0.0
    return window / targets


class UsageSource(Protocol):
    """What the poller needs from the API client."""

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Totals:
        """Totals over the inclusive interval; raises ApiError."""
        ...


@dataclass(slots=True)
class _Health:
    """Per-target poll health, mutated only by that target's task."""

    up: bool = False
    last_success: float | None = None
    failures: Counter[str] = field(default_factory=Counter)
    last_problem: str | None = None
    retry_at: float = 0.0  # monotonic; set after a permanent error
    windows: tuple[tuple[Window, Totals], ...] = ()
    windows_at: float | None = None
    next_window_read: float = 0.0  # wall clock
    polled: bool = False  # polled at least once: new targets are read at once, not paced


class Poller:
    """Owns the ledgers of the configured targets and advances them one cycle at a time."""

    def __init__(self, config: Config, source: UsageSource, clock: Clock, pool: WorkerPool,
                 ledgers: Mapping[str, Ledger]) -> None:
        self._config = config
        self._source = source
        self._clock = clock
        self._pool = pool
        self._lock = threading.Lock()  # guards every ledger
        self._ledgers = dict(ledgers)
        self._health = {t.ident: _Health() for t in config.targets}

    def carry_health(self, previous: Poller, *, lift_pauses: bool) -> None:
        """Keep the poll health of targets ``previous`` also polled (a reload is not a restart).

        Failure counters must not reset within a process. With ``lift_pauses`` (a reload: when an
        operator fixes keys) permanent-error pauses end; a discovery change keeps them. Window
        gauges are dropped if the windows changed.
        """
        same_windows = previous._config.windows == self._config.windows
        for ident in self._health.keys() & previous._health.keys():
            health = previous._health[ident]
            if lift_pauses:
                health.retry_at = 0.0
            if not same_windows:
                health.windows, health.windows_at, health.next_window_read = (), None, 0.0
            self._health[ident] = health

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets this poller polls, in order."""
        return self._config.targets

    def locked(self) -> threading.Lock:
        """Hold this while reading ledgers that polls may be updating (e.g. to save state)."""
        return self._lock

    def ledgers(self) -> dict[str, Ledger]:
        """The live ledgers (callers must not mutate them)."""
        return dict(self._ledgers)

    def cycle(self) -> Snapshot:
        """Poll every target once, concurrently, and return the resulting snapshot."""
        budget = max(self._config.poll.interval, self._config.api.timeout)
        deadline = self._clock.monotonic() + budget
        tasks = [partial(self.poll_target, t, deadline) for t in self._config.targets]
        self._pool.run_all(tasks, self._gap(), self._clock)
        return self.snapshot()

    def _gap(self) -> float:
        """Pace only steady cycles: the first poll of a target (start, reload) is not delayed."""
        if not all(self._health[t.ident].polled for t in self._config.targets):
            return 0.0
        return start_gap(len(self._config.targets), self._config.poll.interval,
                         self._config.api.rate_limit)

    def snapshot(self) -> Snapshot:
        """The current state of every target."""
        with self._lock:
            targets = tuple(self._target_snapshot(t) for t in self._config.targets)
        return Snapshot(targets=targets, generated_at=self._clock.time())

    def _target_snapshot(self, target: Target) -> TargetSnapshot:
        ledger, health = self._ledgers[target.ident], self._health[target.ident]
        return TargetSnapshot(
            target=target, counters=ledger.counters(), windows=health.windows,
            windows_at=health.windows_at, up=health.up, last_success=health.last_success,
            settled_until=ledger.settled_until(), failures=tuple(sorted(health.failures.items())),
            revisions=ledger.revisions, late_after_settle=ledger.late_after_settle)

    def poll_target(self, target: Target, deadline: float) -> None:
        """Read what the target's ledger needs and its windows when due; never raises."""
        health = self._health[target.ident]
        health.polled = True
        if self._clock.monotonic() < health.retry_at:
            return  # a permanent error: retried on a slow cadence, not hammered
        try:
            self._read_counts(target, deadline)
            self._read_windows(target, health, deadline)
        except ApiError as error:
            self._failed(target, health, error)
        except Exception:  # a bug must cost one target one cycle, not the poll loop
            log.exception("internal error polling target %s", target.ident)
            internal = ApiError("internal", "internal error (see log)", transient=True)
            self._failed(target, health, internal)
        else:
            self._succeeded(target, health)

    def _read_counts(self, target: Target, deadline: float) -> None:
        ledger = self._ledgers[target.ident]
        now = int(self._clock.time())
        with self._lock:
            reads = ledger.plan(now, max_reads=MAX_READS_PER_CYCLE)
        for i, read in enumerate(reads):
            if i and self._clock.monotonic() >= deadline:
                return  # out of budget: the rest stay open and are read next cycle
            read_at = int(self._clock.time())  # taken before sending: conservative for settling
            totals = self._source.get_usage(target, read.start, read.end, self._for_call(deadline))
            with self._lock:
                ledger.record(read, totals, read_at)

    def _read_windows(self, target: Target, health: _Health, deadline: float) -> None:
        now = self._clock.time()
        if now < health.next_window_read or not self._config.windows:
            return
        if self._clock.monotonic() >= deadline:
            return  # out of budget: the gauges keep their last values and time stamp
        end = int(now)
        results = []
        for window in self._config.windows:
            totals = ZERO
            for start, stop in window_slices(end, window.seconds):
                totals += self._source.get_usage(target, start, stop, self._for_call(deadline))
            results.append((window, totals))
        health.windows, health.windows_at = tuple(results), float(end)
        health.next_window_read = now + self._config.poll.window_interval

    def _for_call(self, deadline: float) -> float:
        """A call retries until the target's budget for the cycle ends, but a call started late
        still gets one full ``api.timeout``: slow answers must not starve the newest period."""
        return max(deadline, self._clock.monotonic() + self._config.api.timeout)

    def _failed(self, target: Target, health: _Health, error: ApiError) -> None:
        health.up = False
        health.failures[error.category] += 1
        if not error.transient:
            health.retry_at = self._clock.monotonic() + self._config.poll.permanent_error_retry
        problem = f"{error.category}:{error.retcode}:{error.http_status}"
        if problem != health.last_problem:  # log a change of state once, not every cycle
            log.warning("target %s failing: %s", target.ident, error.message)
            health.last_problem = problem

    def _succeeded(self, target: Target, health: _Health) -> None:
        if health.last_problem is not None:
            log.info("target %s recovered", target.ident)
        health.up, health.last_problem, health.retry_at = True, None, 0.0
        health.last_success = self._clock.time()

