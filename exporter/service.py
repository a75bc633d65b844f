"""The running exporter: the poll loop, the reload swap, and the wiring of config to client,
poller, state, pair and server. Each concept lives in the package that owns it (see
docs/architecture.md); this module only calls them in order."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from prometheus_client import CollectorRegistry

from exporter.accounting.ledger import Ledger
from exporter.accounting.snapshot import Snapshot
from exporter.accounting.state import StateKeeper
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.config import Config
from exporter.core.clock import Clock
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.metrics.shape import Shape
from exporter.polling.accounts import Accounts, ApiStack, Connect, api_stack, grid_of
from exporter.polling.costing import Costing
from exporter.polling.pairing import Pairing
from exporter.polling.polled import Polled
from exporter.polling.poller import Poller
from exporter.polling.sharding import Shard
from exporter.polling.startup import Startup
from exporter.polling.status import PollStatus
from exporter.polling.supervisor import Heartbeat, StageGuard, loaded, pause

__all__ = ["READY_CYCLES", "ApiStack", "Service"]

log = logging.getLogger(__name__)

#: Published cycles after which /-/ready answers 200 even if a target still waits for its
#: baseline (it normally waits a poll at most).
READY_CYCLES = 3

ConfigLoader = Callable[[], Config]


class Service:
    """Polls on a loop, keeps state, publishes snapshots, and swaps configs between cycles.

    Locks: ``_cycle_lock`` keeps a config swap out of a cycle; ``_reload_lock`` serialises
    reloads. The poller and the parked ledgers have their own (see polling.pairing)."""

    def __init__(self, config: Config, clock: Clock, registry: CollectorRegistry,
                 load_config: ConfigLoader, *, rng: random.Random | None = None,
                 shard: Shard | None = None, connect: Connect | None = None,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """``config`` and ``load_config`` give static targets already cut to ``shard``; the
        shard is kept to cut discovered targets too. ``connect`` builds what talking to the
        API takes (the real client by default; tests hand in a fake API). ``on_reload`` runs
        once a reloaded config is in force (the web config is swapped there)."""
        self.clock, self._config, self._shard = clock, config, shard or Shard(0, 1)
        self.metrics = SelfMetrics(registry)
        self._guard, self._heartbeat = StageGuard(self.metrics.poll_errors), Heartbeat(clock)
        self.cache = ExpositionCache(shape=Shape.of(config.metrics))
        self.ready, self.stopping = threading.Event(), threading.Event()
        self._wake = threading.Event()  # cuts the pause between cycles short (reload, stop)
        self._load_config, self._on_reload = load_config, on_reload
        self._cycle_lock, self._reload_lock = threading.Lock(), threading.Lock()
        self._state = StateKeeper(config.state.path, self._state_written)
        self.api_clock = ApiClock(clock)
        self.buckets = BucketMeter(self.metrics)
        self._accounts = Accounts(connect or partial(
            api_stack, clock=clock, rng=rng or random.Random(),  # noqa: S311 (jitter)
            observer=self.metrics, api_clock=self.api_clock), clock)
        self._api = self._accounts.connect(config)
        self._pairing = Pairing()
        doc = self._state.load()
        self._cost = Costing(config, doc)
        self._startup = Startup(doc.ledgers, clock, self.api_clock)
        self._published = 0  # cycles published (readiness, see _publish)
        self._polled = Polled(config, doc.ledgers, doc.parked, make=self._make_poller,
                              cost=self._cost, api_now=lambda: int(self.api_clock.now()))
        self.metrics.watch(
            clock_offset=self.api_clock.offset, bucket=lambda: self.buckets.width,
            rate=self._accounts.current_rate, targets=lambda: len(self._poller.targets),
            seeding=lambda: len(self._cost.seeds_left(t.ident for t in self._poller.targets)))
        self.metrics.reloaded(True, clock.time())

    @property
    def _poller(self) -> Poller:
        return self._polled.poller

    def _make_poller(self, config: Config, ledgers: dict[str, Ledger]) -> Poller:
        return Poller(config, self._api.client, self.clock, self._api.pool, ledgers,
                      self.api_clock, self.buckets, self._cost.seeding)

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
            aligned = self._config.accounting.origin is not None and self.api_clock.known
            self._wake.wait(pause(interval, elapsed, self.api_clock.now() if aligned else None))
            self._wake.clear()

    def run_cycle(self) -> None:
        """One cycle: poll, persist, then publish (in that order).

        State is written before the snapshot is published, so a value a scraper has seen is
        never above what a restart (even after ``kill -9``) continues from. While the state
        file cannot be written, nothing new is published: /metrics holds its last numbers
        rather than show counters a restart would take back (Prometheus would read that as a
        reset and count the whole value again). The first cycles' calls that learn the API's
        clock and ask a peer are made before the cycle lock is taken.
        """
        fetched = self._guard.run("clock", lambda: self._startup.ask(
            self._api.client, self._poller, self._config, self._pairing, self._deadline()), None)
        with self._cycle_lock:
            guard = self._guard  # an unexpected error costs its stage, not the loop
            if fetched is not None:
                guard.run("clock", lambda: self._pairing.take(
                    *fetched, config=self._config, poller=self._poller,
                    seeding=self._cost.seeding,
                    grid_of=grid_of(self._config)), None)
            guard.run("clock", self._rebase, None)
            guard.run("discovery", lambda: self._polled.discover(
                self._accounts, self._config, self._shard, self._deadline()), None)
            guard.run("keys", lambda: self._accounts.refresh_keys(
                self._config, self._poller.targets, self._deadline()), None)
            started = self.clock.monotonic()
            polled = guard.run("poll", self._poller.cycle, None)
            guard.run("clock", self._rebase, None)  # the poll may have settled the API's time
            if polled is not None:
                snapshot = guard.run("cost", lambda: self._priced(polled), polled)
                if guard.run("state", self.save_state, False):
                    guard.run("publish", lambda: self._publish(snapshot), None)
                else:  # health still shown, so the operator sees why
                    guard.run("publish", lambda: self.cache.hold(snapshot), None)
            self.metrics.cycle_duration.observe(self.clock.monotonic() - started)

    def _deadline(self) -> float:
        return self.clock.monotonic() + self._config.longest_timeout()

    def _rebase(self) -> None:
        self._startup.rebase(self._config, self._poller, self.metrics.backfill_skipped.inc)

    def _publish(self, snapshot: Snapshot) -> None:
        """Publish; ready once no answering target still waits for its baseline (the API's
        time not agreed yet: a poll, see api.clock), or from the third cycle on whatever."""
        self.cache.publish(snapshot)
        self._published += 1
        if self._published >= READY_CYCLES or not self._poller.awaiting_baseline():
            self.ready.set()

    def healthy(self) -> bool:
        """Whether the poll loop finished a cycle recently (see supervisor.STALE_FACTOR)."""
        return self._heartbeat.fresh(self._config.poll.interval, self._config.longest_timeout())

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
            config = loaded(self._load_config)
            if isinstance(config, str):
                self.metrics.reloaded(False, self.clock.time())
                log.error("config reload rejected, keeping the old config: %s", config)
                return config
            with self._cycle_lock:
                self._apply(config)
                self._on_reload()
                if self.save_state():
                    self.cache.publish(self._priced(self._poller.snapshot()))
            self.metrics.reloaded(True, self.clock.time())
            self._wake.set()  # poll added targets now, not an interval from now
            log.info("config reloaded: %d targets", len(config.targets))
            return None

    def save_state(self) -> bool:
        """Write the ledgers atomically, when a state path is configured; False if that failed
        (said when it starts and when it ends, not every cycle)."""
        self._polled.expire()
        with self._poller.locked():
            # One document: ledgers (polled and parked), cost and budgets move together.
            return self._state.save(self._cost.state(
                self._polled.known(), self._polled.parked.since()))

    def _state_written(self, ok: bool) -> None:
        self.metrics.state_writes.labels("success" if ok else "error").inc()
        if ok:
            self.metrics.state_saved.set(self.clock.time())

    def ledger_document(self) -> bytes:
        """The settled ledgers for a peer (``/-/ledgers``; see polling.pairing)."""
        return self._pairing.document(self._config, self._polled, grid_of(self._config))

    def _apply(self, config: Config) -> None:
        """Swap ``config`` in; kept targets keep ledgers and health. Call under the cycle lock."""
        if config.account_apis() != self._config.account_apis():
            # Endpoint, keys, timeout, rate or concurrency changed: fresh clients and pools.
            old, self._api = self._api, self._accounts.connect(config)
            old.close()
        self._state.configure(config.state.path)
        if (was := self._config.accounting.origin) != config.accounting.origin:
            log.warning("accounting.origin changed from %s to %s (what that does to counters: "
                        "docs/deployment.md)", was, config.accounting.origin)
        self._config = config
        self.cache.shape = Shape.of(config.metrics)
        self._polled.follow(self._accounts, config, self._shard, reloaded=True)

    def _priced(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with this cycle's cost, budget use, discovery state and key health."""
        polled = [t.ident for t in self._poller.targets]
        with self._poller.locked():  # the lock save_state holds (stop() does not wait)
            snapshot = self._cost.priced(snapshot, self.api_clock.now(), polled)
        discovery, keys = self._accounts.snapshots(self._config, self._poller.targets)
        return replace(snapshot, discovery=discovery, keys=keys)
