"""The running exporter: wires config to client, poller, state and server; reload; shutdown."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import requests
from prometheus_client import CollectorRegistry
from requests.adapters import HTTPAdapter

from exporter.client import UsageClient
from exporter.clock import Clock
from exporter.config import Config, ConfigError
from exporter.exposition import ExpositionCache
from exporter.ledger import Ledger
from exporter.poller import Poller
from exporter.ratelimit import RateLimiter
from exporter.selfmetrics import SelfMetrics
from exporter.state import StateError, StateStore, reconcile
from exporter.workers import WorkerPool

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], Config]


class Service:
    """Polls on a loop, keeps state, publishes snapshots, and swaps configs between cycles."""

    def __init__(self, config: Config, clock: Clock, registry: CollectorRegistry,
                 load_config: ConfigLoader, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.metrics = SelfMetrics(registry)
        self.cache = ExpositionCache()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._load_config = load_config
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._cycle_lock = threading.Lock()
        self._pending: Config | None = None
        self._store = StateStore(config.state.path) if config.state.path else None
        self._config = config
        self._pool = WorkerPool(config.api.max_concurrency)
        self._session = _session(config.api.max_concurrency)
        self._poller = self._build_poller(config, self._initial_ledgers(config))
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(clock.time())

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    def run(self) -> None:
        """Poll until :meth:`stop`: first cycle at once, then every ``poll.interval``."""
        interval = self._config.poll.interval
        log.info("polling %d targets every %gs", len(self._config.targets), interval)
        while not self.stopping.is_set():
            started = self.clock.monotonic()
            self.run_cycle()
            elapsed = self.clock.monotonic() - started
            if elapsed > self._config.poll.interval:
                self.metrics.cycle_overruns.inc()
            self.stopping.wait(max(0.0, self._config.poll.interval - elapsed))

    def run_cycle(self) -> None:
        """One cycle: apply a pending reload, poll, persist, then publish (in that order).

        State is written before the snapshot is published, so a value a scraper has seen is
        never above what a restart (even after ``kill -9``) continues from.
        """
        with self._cycle_lock:
            self._apply_pending()
            started = self.clock.monotonic()
            snapshot = self._poller.cycle()
            self.save_state()
            self.cache.publish(snapshot)
            self.metrics.cycle_duration.observe(self.clock.monotonic() - started)
            self.ready.set()

    def stop(self) -> None:
        """Stop the loop and flush state; safe to call from a signal handler's thread."""
        self.stopping.set()
        self.save_state()
        self._pool.close()

    def reload(self) -> str | None:
        """Validate the config source; queue it for the next cycle. None, or why it failed."""
        try:
            config = self._load_config()
        except ConfigError as error:
            self.metrics.reload_success.set(0)
            log.error("config reload rejected, keeping the old config:\n%s", error)
            return "; ".join(error.problems)
        self._pending = config
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(self.clock.time())
        log.info("config reloaded: %d targets, applied from the next cycle", len(config.targets))
        return None

    def save_state(self) -> None:
        """Write the ledgers atomically, when a state path is configured."""
        if self._store is None:
            return
        try:
            with self._poller.locked():
                self._store.save(self._poller.ledgers())
        except OSError as error:
            self.metrics.state_writes.labels("error").inc()
            log.error("cannot write state file %s: %s", self._store.path, error)
        else:
            self.metrics.state_writes.labels("success").inc()

    def _initial_ledgers(self, config: Config) -> dict[str, Ledger]:
        loaded: dict[str, Ledger] = {}
        if self._store is not None:
            try:
                loaded = self._store.load()
            except StateError as error:
                log.error("%s; starting from zero", error)
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

    def _build_poller(self, config: Config, ledgers: dict[str, Ledger]) -> Poller:
        limiter = RateLimiter(config.api.rate_limit, burst=max(1, config.api.max_concurrency),
                              clock=self.clock)
        client = UsageClient(config.api, self._session, self.clock, self._rng, limiter,
                             self.metrics)
        self.metrics.targets.set(len(config.targets))
        self.metrics.rate_limit.set_function(lambda: limiter.current_rate)
        return Poller(config, client, self.clock, self._pool, ledgers)

    def _apply_pending(self) -> None:
        config, self._pending = self._pending, None
        if config is None:
            return
        if self._store is None and config.state.path:
            self._store = StateStore(config.state.path)
        ledgers = self._reconcile(config, self._poller.ledgers())
        self._config = config
        self._poller = self._build_poller(config, ledgers)


def _session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
