"""Immutable results of a poll cycle: what the exposition renders and the server serves."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from exporter.config import Target, Window
from exporter.core.usage import ZERO, Totals
from exporter.cost.budgets import BudgetSnapshot


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """Everything exported about one target, as of the end of a poll cycle."""

    target: Target
    counters: Totals = ZERO
    windows: tuple[tuple[Window, Totals], ...] = ()
    windows_at: float | None = None  # wall-clock end of the window reads
    up: bool = False
    last_success: float | None = None
    settled_until: int | None = None
    failures: tuple[tuple[str, int], ...] = ()  # category -> count, since start
    revisions: int = 0  # readings lower than an earlier one (kept the higher)
    late_after_settle: Totals = ZERO  # usage that appeared after its period settled
    given_up: tuple[tuple[str, int], ...] = ()  # reason -> seconds the API kept rejecting
    cost: tuple[tuple[str, Decimal], ...] = ()  # currency -> exact cost counted so far
    window_cost: tuple[tuple[Window, str, Decimal], ...] = ()  # window totals at today's price
    # False: counters and cost are not exported (behind the origin, they would differ from a
    # peer's settled value); catchup_remaining: API seconds not read yet (with an origin only).
    counting: bool = True
    catchup_remaining: int | None = None
    settled: Totals | None = None  # the closed part of the counters (with an origin only)


@dataclass(frozen=True, slots=True)
class DiscoverySnapshot:
    """What the latest discovery refresh found, and how refreshes have gone."""

    targets: int = 0  # discovered targets being polled
    keys: int = 0  # keys listed before filtering
    selected: int = 0  # keys that passed the filters
    dropped: int = 0  # targets left out by discovery.max_targets
    last_success: float | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True)
class KeyHealth:
    """One polled key as the cloud lists it: quotas, use and expiry (never its secret).

    Amounts are exact, in the account's currency; None is "no series" (no limit, not given).
    """

    project: str
    key_id: str
    name: str
    status: int
    disabled: bool
    expires: int | None = None  # Unix seconds; None: never expires
    daily_limit: Decimal | None = None
    daily_used: Decimal | None = None
    monthly_limit: Decimal | None = None
    monthly_used: Decimal | None = None
    account: str = ""  # with several accounts, the one that lists the key


@dataclass(frozen=True, slots=True)
class KeysSnapshot:
    """Key health of the polled keys, and how the listings behind it have gone."""

    keys: tuple[KeyHealth, ...] = ()
    last_success: float | None = None
    failures: tuple[tuple[str, int], ...] = ()  # reason -> failed listings, since start


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All targets, in configuration order, and the exporter-wide cost and discovery state."""

    targets: tuple[TargetSnapshot, ...] = ()
    generated_at: float = 0.0
    budgets: tuple[BudgetSnapshot, ...] = ()
    discovery: DiscoverySnapshot | None = None
    keys: KeysSnapshot | None = None  # None: key health is off
    unpriced: tuple[tuple[str, str], ...] = ()  # (model, reason) of polled models without price
