"""Several accounts: each target's calls go through its own account's client, rate limit and
concurrency (separate quotas at the cloud), and discovery and key health run per account."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from exporter.accounting.snapshot import DiscoverySnapshot, KeysSnapshot
from exporter.config.accounts import labelled
from exporter.config.types import Config, Target
from exporter.core.usage import Reading


class AccountClient(Protocol):
    """What the router needs of one account's API client."""

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        """Totals for the target's window."""
        ...

    def sync_clock(self, deadline: float) -> str | None:
        """Learn the API's clock; why the API did not answer, or None."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class AccountRouter:
    """Usage reads through the target's account's client, at most that account's
    ``max_concurrency`` at once: the worker pool is shared, each account's quota is its own."""

    def __init__(self, clients: Mapping[str, AccountClient], concurrency: Mapping[str, int],
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
