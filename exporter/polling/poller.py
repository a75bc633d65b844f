"""The poll cycle: plan reads per target, call the API concurrently, record, snapshot."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from functools import partial

from exporter.accounting.ledger import Ledger, Read
from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.sources import UsageApi
from exporter.config import Config, Target
from exporter.core.clock import Clock
from exporter.core.grid import Grid
from exporter.core.usage import Totals
from exporter.polling.health import Health
from exporter.polling.seeding import Seeding
from exporter.polling.seedreads import SeedReader
from exporter.polling.status import PollStatus
from exporter.polling.windowreads import WindowGauges, WindowReader
from exporter.polling.workers import Job, WorkerPool

log = logging.getLogger(__name__)

#: Catch-up reads per target per cycle, so one long-down target cannot stall a cycle.
MAX_READS_PER_CYCLE = 8
#: Cycles a read may fail, while other reads of its target succeed, before it is given up.
MAX_STRIKES = 5
#: Share of poll.interval over which target starts are spread when pacing applies; the rest is
#: slack for slow calls, retries and catch-up reads, so a paced cycle still ends in its interval.
SPREAD = 0.5
#: Seconds a fresh ledger's first read reaches past the API's time as estimated while answers do
#: not agree on it yet: the estimate may be a plain GET's ``Date``, low by that answer's
#: latency, and the baseline is taken only if the agreed time of sending lies inside the read
#: (_take_baseline). An API that refuses an end in the future is asked without it from then on.
REACH = 60
#: RetCodes for a parameter the API refuses (missing, invalid): what a future end would get.
BAD_PARAMETER = (220, 230)
#: The steps of a target's poll, in order (Poller._job).
COUNTS, WINDOWS, SEEDS = range(3)


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


class Poller:
    """Owns the ledgers of the polled targets and advances them one cycle at a time.

    Ledgers speak API time (``api_clock``); scheduling and deadlines use only the monotonic
    clock, so a step of the local wall clock neither closes a period early nor delays one.
    """

    # The collaborators are the agreed seam; keywords would not make the call clearer.
    def __init__(self, config: Config, source: UsageApi, clock: Clock,  # noqa: PLR0917
                 pool: WorkerPool, ledgers: Mapping[str, Ledger], api_clock: ApiClock,
                 buckets: BucketMeter | None = None, seeding: Seeding | None = None,
                 status: PollStatus | None = None) -> None:
        """Targets without a ledger get one, once the API has told its time: from
        ``accounting.origin``'s day when one is set, else fresh (counting from its first
        successful read, see accounting.ledger). ``buckets``, ``seeding`` (the budget seeds
        of new ledgers) and ``status`` are shared by the pollers of a process."""
        self._config = config
        self.status = status or PollStatus()  # what polling does now, in words
        self._source = source
        self._clock = clock
        self._api_clock = api_clock
        self._buckets = buckets if buckets is not None else BucketMeter()
        self._seeding = seeding
        self._pool = pool
        self._lock = threading.Lock()  # guards every ledger
        self._ledgers = dict(ledgers)
        self._health = {t.ident: Health() for t in config.targets}
        self._grids = {account: config.grid(account) for account in config.account_apis()}
        self._windows = WindowReader(config, source, clock, api_clock, self._buckets,
                                     lambda: self.status, self._for_call)
        self._seeds = SeedReader(config, source, clock, api_clock, self._buckets,
                                 self._for_call)

    def carry_health(self, previous: Poller, *, lift_pauses: bool) -> None:
        """Keep the poll health of targets ``previous`` also polled (a reload is not a restart).

        Failure counters must not reset within a process. With ``lift_pauses`` (a reload: when an
        operator fixes keys) permanent-error pauses end; a discovery change keeps them. Window
        gauges are dropped if the windows changed.
        """
        same_windows = previous._config.windows == self._config.windows
        self.status = previous.status
        for ident in self._health.keys() & previous._health.keys():
            health = previous._health[ident]
            if lift_pauses:
                health.failures.lift()
            if not same_windows:
                health.windows = WindowGauges()
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

    def awaiting_baseline(self) -> bool:
        """Whether a target that answered still waits for its baseline (its first answer held
        until the API's time is agreed, see _take_baseline)."""
        with self._lock:
            return any(health.first.held is not None or (health.outcome.up
                                                         and ident in self._ledgers
                                                         and self._ledgers[ident].fresh)
                       for ident, health in self._health.items())

    def adopt(self, ident: str, ledger: Ledger) -> None:
        """Poll ``ident`` from ``ledger`` on (a peer's settled ledger): it replaces the ledger
        the target had, or ends its wait for one; it still has to catch up to be exported."""
        with self._lock:
            self._ledgers[ident] = ledger
            health = self._health.get(ident)
            if health is not None:
                health.catchup.restart()

    def cycle(self) -> Snapshot:
        """Poll every target once, concurrently, and return the resulting snapshot."""
        budget = max(self._config.poll.interval, self._config.longest_timeout())
        deadline = self._clock.monotonic() + budget
        self._pool.run_all([self._job(t, deadline) for t in self._config.targets], self._gap(),
                           self._clock)
        return self.snapshot()

    def _gap(self) -> float:
        """Pace only steady cycles: the first poll of a target (start, reload) is not delayed."""
        if not all(self._health[t.ident].outcome.polled for t in self._config.targets):
            return 0.0
        return start_gap(len(self._config.targets), self._config.poll.interval,
                         self._config.total_rate_limit())

    def snapshot(self) -> Snapshot:
        """The current state of every target."""
        with self._lock:
            targets = tuple(self._target_snapshot(t) for t in self._config.targets)
        return Snapshot(targets=targets, generated_at=self._clock.time())

    def _target_snapshot(self, target: Target) -> TargetSnapshot:
        ledger, health = self._ledgers.get(target.ident), self._health[target.ident]
        shared = self._config.accounting.origin is not None
        failures, catchup = health.failures.by_reason(), health.catchup
        if ledger is None:  # counting has not begun: the API's time is not known yet
            return TargetSnapshot(target=target, failures=failures, counting=not shared)
        if shared and not catchup.caught_up:
            # Behind the origin's catch-up, this replica's counters would differ from its
            # peer's settled value: they are not exported until every second was read.
            return TargetSnapshot(
                target=target, counters=ledger.counters(), up=False, counting=False,
                catchup_remaining=catchup.remaining, failures=failures)
        return TargetSnapshot(
            catchup_remaining=catchup.remaining if shared else None,
            settled=ledger.settled_totals() if shared else None,
            target=target, counters=ledger.counters(), windows=health.windows.values,
            windows_at=health.windows.at, up=health.outcome.up,
            last_success=health.outcome.last_success,
            settled_until=ledger.settled_until(), failures=failures,
            revisions=ledger.revisions, late_after_settle=ledger.late_after_settle,
            given_up=tuple(sorted(ledger.given_up.items())))

    def poll_target(self, target: Target, deadline: float) -> None:
        """Poll ``target`` once, as a cycle does (see _job); never raises."""
        self._job(target, deadline)()

    def _job(self, target: Target, deadline: float) -> Job:
        """The target's poll: what its ledger needs and, once that worked, its windows when
        due, then its budget seed. ``uminfer_up`` is about counting: a failed window read is
        counted and logged but leaves the target up and counting. The pool hands a bug in a
        step to _internal_error."""
        return Job((partial(self._poll_counts, target, deadline),
                    partial(self._poll_windows, target, deadline),
                    partial(self._poll_seeds, target, deadline)),
                   partial(self._internal_error, target))

    def _poll_counts(self, target: Target, deadline: float) -> bool:
        """Read what the target's ledger needs; whether that worked."""
        health = self._health[target.ident]
        health.outcome.tried()
        if health.failures.paused(self._clock.monotonic()):
            return False  # a permanent error: retried on a slow cadence, not hammered
        error = self._read_counts(target, health, deadline)
        self._track_catchup(target, health)
        if error is not None:
            self._failed(target, health, error)
            return False  # the API is failing this target: window reads would only fail too
        self._succeeded(target, health)
        return True

    def _poll_windows(self, target: Target, deadline: float) -> bool:
        health = self._health[target.ident]
        self._windows.poll(target, self._grid(target), health.windows, health.failures.counts,
                           deadline)
        return True

    def _poll_seeds(self, target: Target, deadline: float) -> bool:
        if self._seeding is not None:
            with self._lock:
                ledger = self._ledgers.get(target.ident)
            self._seeds.read(target, ledger, self._seeding, deadline)
        return True

    def _internal_error(self, target: Target, step: int, error: Exception) -> bool:
        """What a bug in ``step`` of the target's poll costs, and whether its later steps run:
        in the count reads, the cycle's poll fails as "internal"; in the window reads, an
        "internal" failure is counted as an API error's would be, and the seed still read."""
        health = self._health[target.ident]
        if step == COUNTS:
            log.error("internal error polling target %s", target.ident, exc_info=error)
            self._track_catchup(target, health)
            self._failed(target, health,
                         ApiError("internal", "internal error (see log)", transient=True))
            return False
        if step == WINDOWS:
            self._windows.failed_internally(target, health.failures.counts, error)
            return True
        log.error("internal error reading the budget seed of target %s", target.ident,
                  exc_info=error)
        return False

    def _read_counts(self, target: Target, health: Health, deadline: float) -> ApiError | None:
        """Make this cycle's count reads; the first error, or None when every read succeeded.

        After a transient failure only the newest read is still tried (the API is likely down,
        and a range that fails must not keep the current period from being counted). A read
        that fails in ``MAX_STRIKES`` cycles in which another read of the target succeeded is a
        range the API rejects: it is given up and counted as such (an audit read is dropped),
        never retried for ever.
        """
        with self._lock:
            ledger = self._ledger(target)
            if ledger is None:
                return self.status.not_answered()
            self._take_baseline(ledger, health)
            now = int(self._api_clock.now())
            health.catchup.plan(now)
            if not self._api_clock.settled:
                # An estimate behind the ledger (a stray Date, a host clock behind) plans no
                # read, and then no answer ever corrects it: read at least where it stands.
                now = max(now, ledger.read_frontier())
            reads = ledger.plan(now, max_reads=MAX_READS_PER_CYCLE)
            reach = ledger.fresh and not self._api_clock.settled and not health.first.no_reach
            if reach:  # its baseline must hold all that is visible when it is sent
                reads = [replace(read, end=min(ledger.grid.end(read.start), read.end + REACH))
                         for read in reads]
        newest = max((i for i, r in enumerate(reads) if r.kind == "count"), default=-1)
        failed: list[tuple[Read, ApiError]] = []
        succeeded = False
        for i, read in enumerate(reads):
            if i and self._clock.monotonic() >= deadline:
                break  # out of budget: the rest stay open and are read next cycle
            if failed and failed[-1][1].transient and i != newest:
                continue
            sent = self._clock.monotonic()
            try:
                reading = self._source.get_usage(target, read.start, read.end,
                                                 self._for_call(deadline))
            except ApiError as error:
                if reach and error.retcode in BAD_PARAMETER:  # perhaps the end in the future
                    health.first.refused()
                    error = ApiError(error.category, f"{error.message} (a read reaching "
                                     f"{REACH} s past the API's time as estimated; asked again "
                                     "without)", retcode=error.retcode,
                                     http_status=error.http_status, transient=True)
                failed.append((read, error))
                continue
            # Taken at sending, by the API's clock as best known after this very answer; None
            # while that clock is not settled: then nothing closes (see api.clock).
            read_at = int(self._api_clock.at(sent)) if self._api_clock.settled else None
            self._buckets.answered(ledger.grid, read.start, read.end, reading.labels)
            if ledger.fresh:
                with self._lock:
                    self._take_baseline(ledger, health)
                    if ledger.fresh:  # this answer is the first: a baseline once time agrees
                        health.first.hold(read, reading.totals, sent)
                        self._take_baseline(ledger, health)
                        succeeded = True
                        health.strikes.cleared(read.start)
                        continue
            self._record(target, ledger, read, reading.totals, read_at)
            health.strikes.cleared(read.start)
            succeeded = True
        self._strike(target, ledger, health, failed, succeeded)
        return failed[0][1] if failed else None

    def _track_catchup(self, target: Target, health: Health) -> None:
        """How far the target's reads are behind the time of this cycle's plan; the first time
        nothing is, it has caught up (for good, in this process: later outages hold counters
        still, as ever, and never hide them)."""
        with self._lock:
            ledger = self._ledgers.get(target.ident)
            caught_up = ledger is not None and health.catchup.track(ledger.read_frontier())
        if caught_up and self._config.accounting.origin is not None:
            log.info("target %s caught up from the origin: counters exported from now on",
                     target.ident)

    def _take_baseline(self, ledger: Ledger, health: Health) -> None:
        """Record a fresh ledger's first answer as its baseline once the API's time is settled
        (see api.clock), if by that time the read held the moment it was sent (its end within
        the second the Date header rounds to): then usage from before the start can never be
        counted as new, nor the start's day be wrong. Else it is read again. Call under the
        lock."""
        if not self._api_clock.settled or (first := health.first.take()) is None:
            return
        read, totals, sent = first
        read_at = int(self._api_clock.at(sent))
        if ledger.fresh and read.start <= read_at <= read.end + 1:
            ledger.record(read, totals, read_at)

    def _record(self, target: Target, ledger: Ledger, read: Read, totals: Totals,
                read_at: int | None) -> None:
        with self._lock:
            recorded = ledger.record(read, totals, read_at)
        if recorded.shortfall is not None:
            self._buckets.additivity_error(target.ident, recorded.shortfall)

    def _strike(self, target: Target, ledger: Ledger, health: Health,
                failed: list[tuple[Read, ApiError]], succeeded: bool) -> None:
        if not succeeded:
            return  # the target as a whole failed: an outage, not a range the API rejects
        for read, error in failed:
            strikes = health.strikes.struck(read.start)
            if strikes < MAX_STRIKES:
                continue
            with self._lock:
                seconds = ledger.give_up(read, error.category)
            health.strikes.cleared(read.start)
            if read.kind == "audit":
                log.error("target %s: dropped the audit of [%d, %d] after %d failed reads (%s); "
                          "usage that arrived there after it settled is not reported",
                          target.ident, read.start, read.end, strikes, error.message)
            elif seconds:
                log.error("target %s: gave up [%d, %d] after %d failed reads (%s); %d seconds "
                          "of usage are not counted", target.ident, read.start, read.end,
                          strikes, error.message, seconds)

    def _ledger(self, target: Target) -> Ledger | None:
        """The target's ledger; one without gets it once the API's time is known: counting
        from ``accounting.origin``'s day (every replica's), or else fresh, from its first
        successful read. Call under the lock."""
        ledger = self._ledgers.get(target.ident)
        if ledger is None and self._api_clock.known:
            grid, settle = self._grid(target), self._config.poll.settle
            origin = self._config.accounting.origin
            if origin is None:
                ledger = Ledger(grid.start(int(self._api_clock.now())), grid, settle,
                                audit=True, fresh=True)
            else:
                ledger = Ledger(grid.start(origin), grid, settle, audit=True)
            self._ledgers[target.ident] = ledger
            if self._seeding is not None:
                self._seeding.begin(target.ident)
        return ledger

    def _grid(self, target: Target) -> Grid:
        """The provider days of the target's account (config.grid, worked out once)."""
        return self._grids.get(target.account) or self._config.grid(target.account)

    def _for_call(self, deadline: float) -> float:
        """A call retries until the target's budget for the cycle ends, but a call started late
        still gets one full ``api.timeout``: slow answers must not starve the newest period."""
        return max(deadline, self._clock.monotonic() + self._config.longest_timeout())

    def _failed(self, target: Target, health: Health, error: ApiError) -> None:
        health.outcome.failed()
        # A change of state is logged once, not every cycle, and once for the targets failing
        # alike.
        if health.failures.failed(error, self._clock.monotonic(),
                                  self._config.poll.permanent_error_retry):
            self.status.failed(target.ident, error)

    def _succeeded(self, target: Target, health: Health) -> None:
        ledger = self._ledgers[target.ident]
        self.status.succeeded(target.ident, None if ledger.fresh else ledger.began or ledger.origin)
        health.failures.cleared()
        health.outcome.succeeded(self._clock.time())
