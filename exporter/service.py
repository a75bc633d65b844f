"""The running exporter: wires config to client, poller, state and server; reload; shutdown."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry

from exporter.client import ApiClient
from exporter.clock import Clock
from exporter.config import ApiConfig, Config, ConfigError
from exporter.costs import CostStore
from exporter.discovery import DiscoveryRunner
from exporter.exposition import ExpositionCache
from exporter.keyapi import KeyClient
from exporter.ledger import Ledger
from exporter.poller import Poller
from exporter.ratelimit import RateLimiter
from exporter.selfmetrics import SelfMetrics
from exporter.sharding import Shard
from exporter.snapshot import Snapshot
from exporter.spend import Spend
from exporter.state import StateError, StateStore, reconcile
from exporter.transport import pooled_session
from exporter.workers import WorkerPool

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], Config]


class Service:
    """Polls on a loop, keeps state, publishes snapshots, and swaps configs between cycles."""

    def __init__(self, config: Config, clock: Clock, registry: CollectorRegistry,
                 load_config: ConfigLoader, *, rng: random.Random | None = None,
                 shard: Shard | None = None, on_reload: Callable[[], None] = lambda: None
                 ) -> None:
        """``config`` and ``load_config`` give static targets already cut to ``shard``; the
        shard is kept to cut discovered targets too. ``on_reload`` runs once a reloaded
        config is in force (the web config is swapped there)."""
        self.clock = clock
        self._shard = shard or Shard(0, 1)
        self.metrics = SelfMetrics(registry)
        self.cache = ExpositionCache()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._wake = threading.Event()  # cuts the pause between cycles short (reload, stop)
        self._load_config = load_config
        self._on_reload = on_reload
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._cycle_lock = threading.Lock()  # a config swap never lands inside a cycle
        self._reload_lock = threading.Lock()  # SIGHUP and POST /-/reload may come together
        self._store = StateStore(config.state.path) if config.state.path else None
        self._state_failing = False  # so a failing state file is logged once, not per cycle
        self._config = config
        self._api = self._api_stack(config.api)
        self._parked: dict[str, Ledger] = {}  # loaded ledgers of targets discovery may find again
        self._spend = Spend(config, _cost_store(config))
        self._discovery = DiscoveryRunner(clock)
        ledgers = self._initial_ledgers(config)
        self._spend.sync({**self._parked, **ledgers})
        self._poller = Poller(config, self._api.client, clock, self._api.pool, ledgers)
        self.metrics.targets.set(len(config.targets))
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(clock.time())

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    def run(self) -> None:
        """Poll until :meth:`stop`: first cycle at once, then every ``poll.interval``."""
        log.info("polling %d targets every %gs", len(self._config.targets),
                 self._config.poll.interval)
        while not self.stopping.is_set():
            started = self.clock.monotonic()
            self.run_cycle()
            elapsed = self.clock.monotonic() - started
            interval = self._config.poll.interval
            if elapsed > interval:
                self.metrics.cycle_overruns.inc()
            self._wake.wait(max(0.0, interval - elapsed))
            self._wake.clear()

    def run_cycle(self) -> None:
        """One cycle: poll, persist, then publish (in that order).

        State is written before the snapshot is published, so a value a scraper has seen is
        never above what a restart (even after ``kill -9``) continues from. While the state
        file cannot be written, nothing new is published: /metrics holds its last numbers
        rather than show counters a restart would take back (Prometheus would read that as a
        reset and count the whole value again).
        """
        with self._cycle_lock:
            self._refresh_targets()
            started = self.clock.monotonic()
            snapshot = self._priced(self._poller.cycle())
            if self.save_state():
                self.cache.publish(snapshot)
                self.ready.set()
            self.metrics.cycle_duration.observe(self.clock.monotonic() - started)

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
                self.metrics.reload_success.set(0)
                reason = "; ".join(error.problems)
                log.error("config reload rejected, keeping the old config: %s", reason)
                return reason
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

    def save_state(self) -> bool:
        """Write the ledgers atomically, when a state path is configured; False if that failed.

        A failure is logged when it starts and when it ends, not every cycle.
        """
        store = self._store
        if store is None:
            return True
        try:
            with self._poller.locked():
                store.save(self._poller.ledgers())
                # After the ledgers: a crash in between leaves cost behind the counters, and
                # the gap is priced on restart; cost is never ahead of what was counted.
                self._spend.save()
        except OSError as error:
            self.metrics.state_writes.labels("error").inc()
            if not self._state_failing:
                log.error("state not saved (%s); /metrics holds its last published numbers "
                          "until it can be", error)
            self._state_failing = True
            return False
        self.metrics.state_writes.labels("success").inc()
        if self._state_failing:
            log.info("state file %s written again; publishing resumes", store.path)
        self._state_failing = False
        return True

    def _initial_ledgers(self, config: Config) -> dict[str, Ledger]:
        loaded: dict[str, Ledger] = {}
        if self._store is not None:
            try:
                loaded = self._store.load()
            except StateError as error:
                log.error("%s; starting from zero", error)
        if config.discovery is not None:
            self._parked = loaded
        return self._reconcile(config, loaded)

    def _reconcile(self, config: Config, ledgers: dict[str, Ledger]) -> dict[str, Ledger]:
        result = reconcile(ledgers, [t.ident for t in config.targets], int(self.clock.time()),
                           config.poll.period, config.poll.settle, config.state.max_backfill,
                           audit=True)
        if result.skipped_seconds:
            self.metrics.backfill_skipped.inc(result.skipped_seconds)
            log.warning("state is older than state.max_backfill: %d seconds of usage skipped",
                        result.skipped_seconds)
        return result.ledgers

    def _api_stack(self, api: ApiConfig) -> _ApiStack:
        limiter = RateLimiter(api.rate_limit, burst=max(1, api.max_concurrency), clock=self.clock)
        session = pooled_session(api.endpoint, api.max_concurrency, os.environ)
        client = ApiClient(api, session, self.clock, self._rng, limiter, self.metrics)
        self.metrics.rate_limit.set_function(lambda: limiter.current_rate)
        keys = KeyClient(client)
        return _ApiStack(WorkerPool(api.max_concurrency), client, keys)

    def _apply(self, config: Config) -> None:
        """Swap ``config`` in; kept targets keep ledgers and health. Call under the cycle lock."""
        if config.api != self._config.api:
            # Endpoint, keys, timeout, rate or concurrency changed: a fresh client and pool.
            old, self._api = self._api, self._api_stack(config.api)
            old.close()
        if config.state.path != (self._store.path if self._store else None):
            self._store = StateStore(config.state.path) if config.state.path else None
            self._spend.store = _cost_store(config)
        self._config = config
        self._spend.configure(config, self._discovery.prices)
        self._retarget(self._effective(config), reloaded=True)

    def _refresh_targets(self) -> None:
        """Discovery (and API list prices) when due; a changed key set changes what is polled."""
        deadline = self.clock.monotonic() + self._config.api.timeout
        if not self._discovery.refresh_if_due(self._api.keys, self._config, deadline):
            return
        self._spend.configure(self._config, self._discovery.prices)
        effective = self._effective(self._config)
        if effective.targets != self._poller.targets:
            self._retarget(effective, reloaded=False)
        self._parked = {}

    def _retarget(self, effective: Config, *, reloaded: bool) -> None:
        """Poll ``effective``'s targets: kept ones keep ledgers, health and cost; gone ones stop."""
        ledgers = self._reconcile(effective, {**self._parked, **self._poller.ledgers()})
        self._spend.sync({**self._parked, **ledgers})
        poller = Poller(effective, self._api.client, self.clock, self._api.pool, ledgers)
        poller.carry_health(self._poller, lift_pauses=reloaded)
        self._poller = poller
        self.metrics.targets.set(len(effective.targets))

    def _effective(self, config: Config) -> Config:
        """``config`` with this shard's discovered targets added (a static target wins a tie)."""
        static = {t.ident for t in config.targets}
        found = tuple(t for t in self._discovery.result.targets
                      if t.ident not in static and self._shard.owns(t))
        return replace(config, targets=config.targets + found) if found else config

    def _priced(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with this cycle's cost, budget use and discovery state."""
        snapshot = self._spend.apply(snapshot, self.clock.time())
        return replace(snapshot, discovery=self._discovery.snapshot(self._config))


@dataclass(frozen=True)
class _ApiStack:
    """What talking to the API takes; replaced as a whole when ``api`` changes."""

    pool: WorkerPool
    client: ApiClient
    keys: KeyClient

    def close(self) -> None:
        self.pool.close()
        self.client.close()


def _cost_store(config: Config) -> CostStore | None:
    # Beside the state file, written right after it (see Spend for why not inside it).
    return CostStore(f"{config.state.path}.cost.json") if config.state.path else None
