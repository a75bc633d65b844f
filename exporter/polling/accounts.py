"""The accounts (``accounts:``, or the one ``api:``): each target's calls go through its own
account's client, rate limit and concurrency (separate quotas at the cloud), and discovery and
key health run per account (:class:`Accounts`)."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from exporter.accounting.snapshot import DiscoverySnapshot, KeysSnapshot
from exporter.api.client import ApiClient, CallObserver
from exporter.api.clock import ApiClock
from exporter.api.keys import KeyClient
from exporter.api.ratelimit import RateLimiter
from exporter.api.sources import KeyApi, UsageApi
from exporter.api.transport import pooled_session
from exporter.config.accounts import labelled
from exporter.config.types import ApiConfig, Config, ModelPrice, Target
from exporter.core.clock import Clock
from exporter.core.grid import Grid
from exporter.core.usage import Reading
from exporter.polling.discovery import DiscoveryRunner
from exporter.polling.keyhealth import KeyHealthRunner
from exporter.polling.sharding import Shard
from exporter.polling.workers import WorkerPool


class AccountRouter:
    """Usage reads through the target's account's client, at most that account's
    ``max_concurrency`` at once: the worker pool is shared, each account's quota is its own."""

    def __init__(self, clients: Mapping[str, UsageApi], concurrency: Mapping[str, int],
                 closers: Iterable[Callable[[], None]] = ()) -> None:
        self._clients = dict(clients)
        self._slots = {name: threading.BoundedSemaphore(concurrency[name]) for name in clients}
        self._closers = list(closers)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        """The read, through the target's account."""
        with self._slots[target.account]:
            return self._clients[target.account].get_usage(target, start, end, deadline)

    def sync_clock(self, deadline: float) -> str | None:
        """Learn the API's clock from every account (the first to answer tells it); why none
        answered, or None."""
        reasons = [client.sync_clock(deadline) for client in self._clients.values()]
        return next((reason for reason in reasons if reason), None)

    def close(self) -> None:
        """Release every account's connections and pool."""
        for client in self._clients.values():
            client.close()
        for close in self._closers:
            close()


def account_view(config: Config, account: str, *, discover: bool) -> Config:
    """``config`` as one account sees it: its static targets, its discovery (or none)."""
    mine = tuple(t for t in config.targets if t.account == account)
    return replace(config, targets=mine, discovery=config.discovery if discover else None)


def discovering(config: Config, account: str) -> bool:
    """Whether discovery lists ``account``'s keys (every account unless it names some)."""
    wanted = config.discovery.accounts if config.discovery else ()
    return config.discovery is not None and (not wanted or account in wanted)


def owned(targets: Iterable[Target], account: str, several: bool) -> tuple[Target, ...]:
    """Discovered targets of ``account``, named and labelled as its static ones are."""
    return tuple(labelled(replace(t, account=account), several) for t in targets)


def merged_discovery(snapshots: Iterable[DiscoverySnapshot | None]) -> DiscoverySnapshot | None:
    """One discovery snapshot for all accounts: counts summed, the oldest last success."""
    found = [s for s in snapshots if s is not None]
    if not found:
        return None
    successes = [s.last_success for s in found]
    return DiscoverySnapshot(
        sum(s.targets for s in found), sum(s.keys for s in found),
        sum(s.selected for s in found), sum(s.dropped for s in found),
        None if None in successes else min(s for s in successes if s is not None),
        sum(s.failures for s in found))


def merged_keys(snapshots: Iterable[KeysSnapshot | None]) -> KeysSnapshot | None:
    """One key-health snapshot for all accounts: keys together, failures summed by reason."""
    found = [s for s in snapshots if s is not None]
    if not found:
        return None
    failures: dict[str, int] = {}
    for snapshot in found:
        for why, count in snapshot.failures:
            failures[why] = failures.get(why, 0) + count
    successes = [s.last_success for s in found]
    return KeysSnapshot(tuple(k for s in found for k in s.keys),
                        None if None in successes else min(s for s in successes if s is not None),
                        tuple(sorted(failures.items())))


@dataclass(frozen=True)
class ApiStack:
    """What talking to one account's API takes (or all of them, through a router); replaced as
    a whole when ``api`` changes."""

    pool: WorkerPool
    client: UsageApi
    keys: KeyApi
    limiter: RateLimiter | None = None  # the account's, for the rate-limit gauge

    def close(self) -> None:
        self.pool.close()
        self.client.close()


Connect = Callable[[ApiConfig], ApiStack]
"""Builds one account's stack (the real client, or a test's fake API)."""


def api_stack(api: ApiConfig, *, clock: Clock, rng: random.Random, observer: CallObserver,
              api_clock: ApiClock) -> ApiStack:
    """The real stack of one account: its pool, rate limiter, signed client and key lister."""
    limiter = RateLimiter(api.rate_limit, burst=max(1, api.max_concurrency), clock=clock)
    session = pooled_session(api.endpoint, api.max_concurrency, os.environ)
    client = ApiClient(api, session, clock, rng, limiter, observer, api_clock)
    return ApiStack(WorkerPool(api.max_concurrency), client, KeyClient(client), limiter)


def grid_of(config: Config) -> Callable[[str], Grid]:
    """The grid of a target's ledger by ident: its account's provider days."""
    accounts = config.account_apis()

    def grid(ident: str) -> Grid:
        account, sep, _ = ident.partition(":")
        return config.grid(account if sep and account in accounts else "")
    return grid


class Accounts:
    """Each account's API stack, discovery and key health, by name ("" alone with one
    account). Used by the poll loop only (under the service's cycle lock)."""

    def __init__(self, connect: Connect, clock: Clock) -> None:
        self._connect, self._clock = connect, clock
        self._stacks: dict[str, ApiStack] = {}
        self._discoveries: dict[str, DiscoveryRunner] = {}
        self._keyhealths: dict[str, KeyHealthRunner] = {}

    def connect(self, config: Config) -> ApiStack:
        """A stack per account; with several, one pool for all and a router that sends each
        target's reads through its own account's client and concurrency."""
        apis = config.account_apis()
        self._stacks = {name: self._connect(api) for name, api in apis.items()}
        if list(apis) == [""]:
            return self._stacks[""]
        router = AccountRouter({n: s.client for n, s in self._stacks.items()},
                               {n: api.max_concurrency for n, api in apis.items()},
                               [s.pool.close for s in self._stacks.values()])
        return ApiStack(WorkerPool(config.total_concurrency()), router,
                        next(iter(self._stacks.values())).keys)

    def current_rate(self) -> float:
        """The exporter's whole allowance (requests a second): each account is its own quota."""
        return sum(s.limiter.current_rate for s in self._stacks.values() if s.limiter is not None)

    def _discovery(self, account: str) -> DiscoveryRunner:
        return self._discoveries.setdefault(account, DiscoveryRunner(self._clock))

    def _keyhealth(self, account: str) -> KeyHealthRunner:
        return self._keyhealths.setdefault(account, KeyHealthRunner(self._clock, account))

    def refresh_targets(self, config: Config, deadline: float) -> bool:
        """Discovery (and API list prices) when due, for every account; whether any changed."""
        changed = [self._discovery(account).refresh_if_due(
            self._stacks[account].keys,
            account_view(config, account, discover=discovering(config, account)), deadline)
            for account in config.account_apis()]
        return any(changed)

    def effective(self, config: Config, shard: Shard) -> Config:
        """``config`` with this shard's discovered targets added (a static target wins a tie)."""
        static = {t.ident for t in config.targets}
        several = len(config.accounts) > 1
        discovered = (t for account in config.account_apis() for t in owned(
            self._discovery(account).result.targets, account, several))
        found = tuple(t for t in discovered if t.ident not in static and shard.owns(t))
        return replace(config, targets=config.targets + found) if found else config

    def prices(self, config: Config) -> tuple[dict[str, tuple[ModelPrice, ...]],
                                              dict[str, dict[str, str]]]:
        """Each account's list prices, and why a listed model's price was not taken."""
        runners = {account: self._discovery(account) for account in config.account_apis()}
        return ({a: r.prices for a, r in runners.items()},
                {a: r.unpriced for a, r in runners.items()})

    def refresh_keys(self, config: Config, targets: Iterable[Target], deadline: float) -> None:
        """Key health of the keys polled now, when due (one listing per project)."""
        polled = tuple(targets)
        for account in config.account_apis():
            mine = [t for t in polled if t.account == account]
            self._keyhealth(account).refresh_if_due(self._stacks[account].keys, config.keys,
                                                    mine, deadline)

    def snapshots(self, config: Config, targets: Iterable[Target]
                  ) -> tuple[DiscoverySnapshot | None, KeysSnapshot | None]:
        """Discovery and key health of every account, merged."""
        polled, accounts = tuple(targets), list(config.account_apis())
        keys = merged_keys(self._keyhealth(a).snapshot(
            config.keys, [t for t in polled if t.account == a]) for a in accounts)
        discovery = merged_discovery(self._discovery(a).snapshot(account_view(
            config, a, discover=discovering(config, a))) for a in accounts)
        return discovery, keys
