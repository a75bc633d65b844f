"""The running exporter: wires config to client, poller, state and server; reload; shutdown."""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from prometheus_client import CollectorRegistry

from exporter.accounting.handoff import (
    Handoff,
    HandoffError,
    Terms,
    fingerprint,
    render,
    takeover,
)
from exporter.accounting.ledger import Ledger
from exporter.accounting.parked import RETENTION, Parked
from exporter.accounting.snapshot import Snapshot
from exporter.accounting.spend import Spend
from exporter.accounting.state import StateDocument, StateError, StateStore, restart, retarget
from exporter.api.buckets import BucketMeter
from exporter.api.client import ApiClient
from exporter.api.clock import ApiClock
from exporter.api.keys import KeyClient
from exporter.api.ratelimit import RateLimiter
from exporter.api.transport import pooled_session
from exporter.config import ApiConfig, Config, ConfigError
from exporter.core.clock import Clock
from exporter.core.grid import Grid
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.metrics.shape import Shape
from exporter.polling.accounts import (
    AccountRouter,
    account_view,
    discovering,
    merged_discovery,
    merged_keys,
    owned,
)
from exporter.polling.discovery import DiscoveryRunner, KeySource
from exporter.polling.keyhealth import KeyHealthRunner
from exporter.polling.peers import fetch
from exporter.polling.poller import Poller, UsageSource
from exporter.polling.seeding import Horizon, Seeding
from exporter.polling.sharding import Shard
from exporter.polling.status import PollStatus
from exporter.polling.supervisor import Heartbeat, StageGuard
from exporter.polling.workers import WorkerPool

log = logging.getLogger(__name__)

#: Published cycles after which /-/ready answers 200 even if a target still waits for its
#: baseline (it normally waits a poll at most).
READY_CYCLES = 3

ConfigLoader = Callable[[], Config]


class Service:
    """Polls on a loop, keeps state, publishes snapshots, and swaps configs between cycles."""

    def __init__(self, config: Config, clock: Clock, registry: CollectorRegistry,
                 load_config: ConfigLoader, *, rng: random.Random | None = None,
                 shard: Shard | None = None,
                 connect: Callable[[ApiConfig], ApiStack] | None = None,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """``config`` and ``load_config`` give static targets already cut to ``shard``; the
        shard is kept to cut discovered targets too. ``connect`` builds what talking to the
        API takes (the real client by default; tests hand in a fake API). ``on_reload`` runs
        once a reloaded config is in force (the web config is swapped there)."""
        self.clock = clock
        self._shard = shard or Shard(0, 1)
        self.metrics = SelfMetrics(registry)
        self._guard = StageGuard(self.metrics.poll_errors)
        self._heartbeat = Heartbeat(clock)
        self.cache = ExpositionCache(shape=Shape.of(config.metrics))
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._wake = threading.Event()  # cuts the pause between cycles short (reload, stop)
        self._load_config, self._on_reload = load_config, on_reload
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._replica = secrets.token_hex(8)  # names it in /-/ledgers: never its own peer
        self._cycle_lock = threading.Lock()  # a config swap never lands inside a cycle
        self._reload_lock = threading.Lock()  # SIGHUP and POST /-/reload may come together
        self._store = StateStore(config.state.path) if config.state.path else None
        self._state_failing = False  # so a failing state file is logged once, not per cycle
        self._config = config
        self.api_clock = ApiClock(clock)
        self.metrics.api_clock_offset.set_function(self._clock_offset)
        self.buckets = BucketMeter(self.metrics)
        self.metrics.api_bucket.set_function(lambda: float(self.buckets.width or "nan"))
        self._connect = connect or self._api_stack
        self._stacks: dict[str, ApiStack] = {}  # by account ("" alone), inside self._api
        self._api = self._connect_all(config)
        # Ledgers of targets not polled now: kept in the state so a target that comes back
        # (reload, discovery) continues where it stood.
        self._parked = Parked()
        # One discovery and one key health per account ("" with a single account).
        self._discoveries: dict[str, DiscoveryRunner] = {}
        self._keyhealths: dict[str, KeyHealthRunner] = {}
        doc = self._load_state()
        self._spend = Spend(config, doc.meters, doc.budgets)
        self._seeding = Seeding(doc.seeds, self._horizon(config))
        self._seeds_due = bool(doc.seeds)  # to say once when the last seed is counted
        ledgers = retarget(doc.ledgers, [t.ident for t in config.targets],
                           self._grid_of(config), config.poll.settle,
                           origin=config.accounting.origin, audit=True)
        self._parked.park({i: led for i, led in doc.ledgers.items() if i not in ledgers},
                          doc.parked, int(self.api_clock.now()))
        self._spend.sync({**self._parked.ledgers(), **ledgers})
        # Rebased at the first cycle, by the API's clock at the moment of the start.
        self._loaded: dict[str, Ledger] | None = doc.ledgers
        self._peers_due = True  # asked once, when the API's clock is first known
        self._published = 0  # cycles published (readiness, see _publish)
        self._started = clock.monotonic()
        self._poller = Poller(config, self._api.client, clock, self._api.pool, ledgers,
                              self.api_clock, buckets=self.buckets, seeding=self._seeding)
        self._wire_gauges(config)

    def _wire_gauges(self, config: Config) -> None:
        """The self-metrics read from the service's parts at scrape time, and the first values."""
        self.metrics.budget_seeding.set_function(lambda: len(self._seeds_left()))
        self.metrics.targets.set(len(config.targets))
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(self.clock.time())

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    @property
    def status(self) -> PollStatus:
        """What polling is doing now, in words (the landing page tells it)."""
        return self._poller.status

    def run(self) -> None:
        """Poll until :meth:`stop`: first cycle at once, then every ``poll.interval``."""
        log.info("polling %d targets every %gs", len(self._config.targets),
                 self._config.poll.interval)
        while not self.stopping.is_set():
            started = self.clock.monotonic()
            self._guard.run("loop", self.run_cycle, None)
            self._heartbeat.beat()
            elapsed = self.clock.monotonic() - started
            interval = self._config.poll.interval
            if elapsed > interval:
                self.metrics.cycle_overruns.inc()
            self._wake.wait(self._pause(interval, elapsed))
            self._wake.clear()

    def _pause(self, interval: float, elapsed: float) -> float:
        """Seconds until the next cycle. With ``accounting.origin``, cycles start at multiples
        of ``poll.interval`` by the API's clock, so replicas read at the same instants and
        their open periods differ as little as their clocks' estimates do."""
        if self._config.accounting.origin is None or not self.api_clock.known:
            return max(0.0, interval - elapsed)
        return interval - self.api_clock.now() % interval

    def run_cycle(self) -> None:
        """One cycle: poll, persist, then publish (in that order).

        State is written before the snapshot is published, so a value a scraper has seen is
        never above what a restart (even after ``kill -9``) continues from. While the state
        file cannot be written, nothing new is published: /metrics holds its last numbers
        rather than show counters a restart would take back (Prometheus would read that as a
        reset and count the whole value again).
        """
        with self._cycle_lock:
            guard = self._guard  # an unexpected error costs its stage, not the loop
            if self._loaded is not None:
                guard.run("clock", self._start_counting, None)
            guard.run("discovery", self._refresh_targets, None)
            guard.run("keys", self._refresh_keys, None)
            started = self.clock.monotonic()
            polled = guard.run("poll", self._poller.cycle, None)
            if self._loaded is not None:  # the poll's answers may have settled the API's time
                guard.run("clock", self._start_counting, None)
            if polled is not None:
                snapshot = guard.run("cost", lambda: self._priced(polled), polled)
                if guard.run("state", self.save_state, False):
                    guard.run("publish", lambda: self._publish(snapshot), None)
                else:  # health still shown, so the operator sees why
                    guard.run("publish", lambda: self.cache.hold(snapshot), None)
            self.metrics.cycle_duration.observe(self.clock.monotonic() - started)

    def _publish(self, snapshot: Snapshot) -> None:
        """Publish; ready once no answering target still waits for its baseline (the API's
        time not agreed yet: a poll, see api.clock), or from the third cycle on whatever."""
        self.cache.publish(snapshot)
        self._published += 1
        if self._published >= READY_CYCLES or not self._poller.awaiting_baseline():
            self.ready.set()

    def healthy(self) -> bool:
        """Whether the poll loop finished a cycle recently (see supervisor.STALE_FACTOR)."""
        return self._heartbeat.fresh(self._config.poll.interval, self._config.api.timeout)

    def stop(self) -> bool:
        """Stop the loop and flush state (False if that failed); safe from any thread."""
        self.stopping.set()
        self._wake.set()
        saved = self.save_state()
        self._api.pool.close()
        return saved

    def reload(self) -> str | None:
        """Validate the config source and put it in force; None, or why it was rejected.

        Returns once the new config is applied and /metrics shows its target set, as
        Prometheus' own reload does. A cycle in flight is finished first, under the old config.
        """
        with self._reload_lock:
            try:
                config = self._load_config()
            except ConfigError as error:
                return self._reload_failed("; ".join(error.problems))
            except Exception as error:  # a loader bug must not kill the reply or the thread
                log.debug("traceback of the failed reload", exc_info=error)
                return self._reload_failed(f"unexpected {type(error).__name__} while loading "
                                           "the config (traceback at debug level)")
            with self._cycle_lock:
                self._apply(config)
                self._on_reload()
                if self.save_state():
                    self.cache.publish(self._priced(self._poller.snapshot()))
            self.metrics.reload_success.set(1)
            self.metrics.reload_timestamp.set(self.clock.time())
            self._wake.set()  # poll added targets now, not an interval from now
            log.info("config reloaded: %d targets", len(config.targets))
            return None

    def _reload_failed(self, reason: str) -> str:
        self.metrics.reload_success.set(0)
        log.error("config reload rejected, keeping the old config: %s", reason)
        return reason

    def save_state(self) -> bool:
        """Write the ledgers atomically, when a state path is configured; False if that failed.

        A failure is logged when it starts and when it ends, not every cycle.
        """
        store = self._store
        if store is None:
            return True
        self._expire_parked()
        try:
            with self._poller.locked():
                # One document: ledgers (polled and parked), cost and budgets move together.
                store.save(StateDocument({**self._parked.ledgers(), **self._poller.ledgers()},
                                         self._parked.since(), self._spend.meters(),
                                         self._spend.budget_use(), self._seeding.pending()))
        except OSError as error:
            self.metrics.state_writes.labels("error").inc()
            if not self._state_failing:
                log.error("state not saved (%s); /metrics holds its last published numbers "
                          "until it can be", error)
            self._state_failing = True
            return False
        self.metrics.state_writes.labels("success").inc()
        self.metrics.state_saved.set(self.clock.time())
        if self._state_failing:
            log.info("state file %s written again; publishing resumes", store.path)
        self._state_failing = False
        return True

    def _load_state(self) -> StateDocument:
        """The saved document, or an empty one (a bad file is set aside and said so)."""
        if self._store is None:
            return StateDocument()
        try:
            return self._store.load()
        except StateError as error:
            log.error("%s; starting from zero", error)
            return StateDocument()

    def _start_counting(self) -> None:
        """At the first cycles: learn the API's clock, then, once answers agree on it, rebase
        the loaded ledgers for the time the process was down, by that clock (meanwhile they
        are read, but nothing closes).
        The one place ``state.max_backfill`` applies (a reload or a discovery change never
        rebases). Call under the cycle lock."""
        unanswered = self._api.client.sync_clock(self.clock.monotonic() + self._config.api.timeout)
        if not self.api_clock.known:
            self._poller.status.no_answer(unanswered)  # each waiting target says why
            return
        config = self._config
        if self._peers_due:  # before the first read: a peer's settled days need no reading
            self._peers_due = False
            if config.ha.peers and config.accounting.origin is not None:
                self._bootstrap(config.accounting.origin)
                config = self._config  # a reload may have landed during the peer call
        if not self.api_clock.settled:
            return  # until answers agree on the API's time, no time is skipped (see api.clock)
        loaded, self._loaded = self._loaded or {}, None
        # With an origin, counters are defined from it: the whole downtime is caught up.
        backfill = config.state.max_backfill if config.accounting.origin is None else 2**40
        with self._poller.locked():
            # At the API's time of the start (never ahead of it, see api.clock): an outage
            # after it is caught up like any other.
            result = restart(loaded, int(self.api_clock.at(self._started)),
                             self._grid_of(config), config.poll.settle, backfill,
                             origin=config.accounting.origin, audit=True)
        if result.skipped_seconds:
            self.metrics.backfill_skipped.inc(result.skipped_seconds)
            log.warning("state is older than state.max_backfill: %d seconds of usage skipped",
                        result.skipped_seconds)

    def _terms(self, origin: int) -> Terms:
        apis = self._config.account_apis()
        return Terms(origin, self._config.poll.settle,
                     tuple(sorted((name, fingerprint(api.public_key))
                                  for name, api in apis.items())))

    def _bootstrap(self, origin: int) -> None:
        """At start, with ``ha.peers``: take a peer's settled ledgers (one call) for the targets
        that have none here or an older one.
        Without a peer that answers, catch up from the API (said in the log). The call is made
        outside the cycle lock (held by the caller): a slow peer must not hold up a reload or a
        stop; a config reloaded meanwhile makes its answer moot."""
        config = self._config
        self._cycle_lock.release()
        try:
            fetched = fetch(config.ha, self._terms(origin), lambda: int(self.api_clock.now()),
                            self.clock, replica=self._replica, grid_of=self._grid_of(config))
        finally:
            self._cycle_lock.acquire()
        if fetched is not None and self._config is not config:
            log.warning("the config was reloaded during the call to peer %s: its ledgers are "
                        "not taken; catching up from the API", fetched.url)
            return
        if fetched is None:
            log.warning("no peer gave its ledgers: catching up from accounting.origin through "
                        "the API (uminfer_catchup_remaining_seconds says how far it has to go)")
            return
        try:
            taken = self._take(fetched.handoff)
        except HandoffError as error:
            log.error("peer %s: its ledgers are refused: %s; catching up from the API instead",
                      fetched.url, error)
            return
        log.info("bootstrapped %d of %d targets from peer %s in %.3fs (one call); the rest "
                 "catch up from the API", taken, len(self._poller.targets), fetched.url,
                 fetched.seconds)

    def _take(self, handoff: Handoff) -> int:
        """Put the peer's newer ledgers in; how many targets took one."""
        polled = {t.ident for t in self._poller.targets}
        with self._poller.locked():
            mine = self._poller.ledgers()
        taken = takeover(handoff.ledgers, mine, polled)
        grid_of = self._grid_of(self._config)
        for ident, led in taken.items():
            led.retune(grid_of(ident), self._config.poll.settle)
            led.audit = True
            if ident not in mine:
                self._seeding.begin(ident)
            self._poller.adopt(ident, led)
        return len(taken)

    def ledger_document(self) -> bytes:
        """The settled ledgers of every target (polled and parked) for a peer (``/-/ledgers``);
        only ledgers that count from ``accounting.origin`` (an empty list without one)."""
        origin = self._config.accounting.origin
        grid_of = self._grid_of(self._config)
        with self._poller.locked():
            known = {**self._parked.ledgers(), **self._poller.ledgers()}
            own = {} if origin is None else {
                ident: led for ident, led in known.items()
                if led.counts_from(grid_of(ident).start(origin))}
            return render(self._terms(origin or 0), own, replica=self._replica)

    def _seeds_left(self) -> set[str]:
        """Polled targets whose budget seed is still to be read (a parked one's waits)."""
        return set(self._seeding.pending()) & {t.ident for t in self._poller.targets}

    def _horizon(self, config: Config) -> Horizon | None:
        """Where new targets' budget seeds start (None without budgets: nothing to seed)."""
        return self._spend.horizon if config.budgets else None

    @staticmethod
    def _grid_of(config: Config) -> Callable[[str], Grid]:
        """The grid of a target's ledger by ident: its account's provider days."""
        accounts = config.account_apis()

        def grid_of(ident: str) -> Grid:
            account, sep, _ = ident.partition(":")
            return config.grid(account if sep and account in accounts else "")
        return grid_of

    def _expire_parked(self) -> None:
        """Forget parked ledgers older than their retention (said once per batch)."""
        old = self._parked.expire(int(self.api_clock.now()))
        if old:
            log.info("forgot %d targets not polled for %d days: %s", len(old),
                     RETENTION // 86400, ", ".join(old[:5]))
            self._spend.sync({**self._parked.ledgers(), **self._poller.ledgers()})

    def _clock_offset(self) -> float:
        offset = self.api_clock.offset()
        return float("nan") if offset is None else offset

    def _api_stack(self, api: ApiConfig) -> ApiStack:
        limiter = RateLimiter(api.rate_limit, burst=max(1, api.max_concurrency), clock=self.clock)
        session = pooled_session(api.endpoint, api.max_concurrency, os.environ)
        client = ApiClient(api, session, self.clock, self._rng, limiter, self.metrics,
                           self.api_clock)
        keys = KeyClient(client)
        return ApiStack(WorkerPool(api.max_concurrency), client, keys, limiter)

    def _connect_all(self, config: Config) -> ApiStack:
        """A stack per account; with several, one pool for all and a router that sends each
        target's reads through its own account's client and concurrency."""
        apis = config.account_apis()
        self._stacks = {name: self._connect(api) for name, api in apis.items()}
        limiters = [s.limiter for s in self._stacks.values() if s.limiter is not None]
        if limiters:  # the exporter's whole allowance: each account is its own quota
            self.metrics.rate_limit.set_function(
                lambda: sum(limiter.current_rate for limiter in limiters))
        if list(apis) == [""]:
            return self._stacks[""]
        router = AccountRouter({n: s.client for n, s in self._stacks.items()},
                               {n: api.max_concurrency for n, api in apis.items()},
                               [s.pool.close for s in self._stacks.values()])
        return ApiStack(WorkerPool(config.api.max_concurrency), router,
                        next(iter(self._stacks.values())).keys)

    def _accounts(self) -> list[str]:
        """The accounts in force ("" alone with a single account)."""
        return list(self._config.account_apis())

    def _discovery(self, account: str) -> DiscoveryRunner:
        return self._discoveries.setdefault(account, DiscoveryRunner(self.clock))

    def _configure_spend(self, config: Config) -> None:
        """Prices and budgets of ``config``, with each account's own list prices."""
        runners = {account: self._discovery(account) for account in self._accounts()}
        self._spend.configure(config, {a: r.prices for a, r in runners.items()},
                              {a: r.unpriced for a, r in runners.items()})

    def _apply(self, config: Config) -> None:
        """Swap ``config`` in; kept targets keep ledgers and health. Call under the cycle lock."""
        if config.account_apis() != self._config.account_apis():
            # Endpoint, keys, timeout, rate or concurrency changed: fresh clients and pools.
            old, self._api = self._api, self._connect_all(config)
            old.close()
        if config.state.path != (self._store.path if self._store else None):
            self._store = StateStore(config.state.path) if config.state.path else None
        if config.accounting.origin != self._config.accounting.origin:
            log.warning("accounting.origin changed from %s to %s: ledgers that began after the "
                        "new origin's day count from it (caught up from the API); those that "
                        "began before keep counting from there (see docs/deployment.md)",
                        self._config.accounting.origin, config.accounting.origin)
        self._config = config
        self.cache.shape = Shape.of(config.metrics)
        self._configure_spend(config)
        self._seeding.configure(self._horizon(config))
        self._retarget(self._effective(config), reloaded=True)

    def _refresh_targets(self) -> None:
        """Discovery (and API list prices) when due; a changed key set changes what is polled."""
        deadline = self.clock.monotonic() + self._config.api.timeout
        changed = [self._discovery(account).refresh_if_due(
            self._stacks[account].keys,
            account_view(self._config, account, discover=discovering(self._config, account)),
            deadline) for account in self._accounts()]
        if not any(changed):
            return
        self._configure_spend(self._config)
        effective = self._effective(self._config)
        if effective.targets != self._poller.targets:
            self._retarget(effective, reloaded=False)

    def _refresh_keys(self) -> None:
        """Key health of the keys polled now, when due (one listing per project)."""
        deadline = self.clock.monotonic() + self._config.api.timeout
        for account in self._accounts():
            runner = self._keyhealths.setdefault(account, KeyHealthRunner(self.clock, account))
            mine = [t for t in self._poller.targets if t.account == account]
            runner.refresh_if_due(self._stacks[account].keys, self._config.keys, mine, deadline)

    def _retarget(self, effective: Config, *, reloaded: bool) -> None:
        """Poll ``effective``'s targets: kept and returning ones keep ledgers, health and cost
        and catch up everything they still have to (nothing is rebased within a process);
        gone ones are parked."""
        known = {**self._parked.ledgers(), **self._poller.ledgers()}
        ledgers = retarget(known, [t.ident for t in effective.targets],
                           self._grid_of(effective), effective.poll.settle,
                           origin=effective.accounting.origin, audit=True)
        self._parked.unpark(ledgers)
        self._parked.park({i: led for i, led in known.items() if i not in ledgers}, {},
                          int(self.api_clock.now()))
        self._spend.sync({**self._parked.ledgers(), **ledgers})
        poller = Poller(effective, self._api.client, self.clock, self._api.pool, ledgers,
                        self.api_clock, self.buckets, self._seeding)
        poller.carry_health(self._poller, lift_pauses=reloaded)
        self._poller = poller
        self.metrics.targets.set(len(effective.targets))

    def _effective(self, config: Config) -> Config:
        """``config`` with this shard's discovered targets added (a static target wins a tie)."""
        static = {t.ident for t in config.targets}
        several = len(config.accounts) > 1
        discovered = (t for account in config.account_apis() for t in owned(
            self._discovery(account).result.targets, account, several))
        found = tuple(t for t in discovered if t.ident not in static and self._shard.owns(t))
        return replace(config, targets=config.targets + found) if found else config

    def _priced(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with this cycle's cost, budget use, discovery state and key health."""
        now = self.api_clock.now()
        # Under the lock save_state holds (stop() saves without waiting for the cycle): a
        # state shows a seed pending or counted, and a meter's counters with their cost.
        with self._poller.locked():
            for seed in self._seeding.take_done():
                self._spend.seed(seed.target, seed.days, now)
                self._seeds_due = True
            snapshot = self._spend.apply(snapshot, now)
        if self._seeds_due and not self._seeds_left():
            self._seeds_due = False
            log.info("budget seeding done: every budget holds its period's usage from before "
                     "counting began")
        accounts, targets = self._accounts(), self._poller.targets
        keys = merged_keys(self._keyhealths.setdefault(
            a, KeyHealthRunner(self.clock, a)).snapshot(
                self._config.keys, [t for t in targets if t.account == a]) for a in accounts)
        discovery = merged_discovery(self._discovery(a).snapshot(account_view(
            self._config, a, discover=discovering(self._config, a))) for a in accounts)
        return replace(snapshot, discovery=discovery, keys=keys)


class UsageClient(UsageSource, Protocol):
    """What the service needs of the API client besides usage reads."""

    def sync_clock(self, deadline: float) -> str | None:
        """Learn the API's clock if no answer has told it yet; why the API did not answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class ApiStack:
    """What talking to the API takes; replaced as a whole when ``api`` changes."""

    pool: WorkerPool
    client: UsageClient
    keys: KeySource
    limiter: RateLimiter | None = None  # the account's, for the rate-limit gauge

    def close(self) -> None:
        self.pool.close()
        self.client.close()
