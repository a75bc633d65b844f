"""Turns each cycle's exact counters into exact cost and budget use (saved in the state)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from exporter.accounting.ledger import Ledger
from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config.types import Config, ModelPrice, Target, Window
from exporter.core.once import Once
from exporter.core.usage import Totals
from exporter.cost.budgets import BudgetTracker
from exporter.cost.meters import CostMeter
from exporter.cost.pricing import PriceBook, cost_of

log = logging.getLogger(__name__)


class Spend:
    """Cost meters per target, the price book in force, and the budgets' use this period."""

    def __init__(self, config: Config, meters: Mapping[str, CostMeter] | None = None,
                 budgets: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self._meters = dict(meters or {})
        self._book = PriceBook(config.pricing)
        self._budgets = BudgetTracker(config.budgets, budgets)
        self._unlisted: Mapping[str, Mapping[str, str]] = {}
        self._said = Once()  # (budget, currency) told about once

    def configure(self, config: Config, listed: Mapping[str, Iterable[ModelPrice]] | None = None,
                  unlisted: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Use ``config``'s prices and budgets from now on; cost already counted stays.
        ``listed`` gives each account's list prices ("" with a single account), ``unlisted``
        why an account's list price of a model was not taken (its unit, say)."""
        self._book = PriceBook(config.pricing).with_listed(listed or {})
        known, self._budgets = self._budgets.names(), BudgetTracker(config.budgets,
                                                                    self._budgets.to_dict())
        for name in sorted(self._budgets.names() - known):
            log.info("budget %s added: it counts usage from now on (the targets already "
                     "counting are not read back to the start of its period)", name)
        self._unlisted = {account: dict(why) for account, why in (unlisted or {}).items()}

    def sync(self, ledgers: Mapping[str, Ledger]) -> None:
        """Meters for exactly these targets (polled and parked). A new meter for a ledger that
        already counted starts at its counters, so usage counted before pricing existed (e.g.
        a version 1 state without its cost file) is never priced."""
        self._meters = {ident: self._meters.get(ident) or CostMeter(seen=led.counters())
                        for ident, led in ledgers.items()}

    def apply(self, snapshot: Snapshot, now: float) -> Snapshot:
        """Price this cycle's increments; ``snapshot`` with cost and budgets filled in."""
        targets = tuple(self._target(t, now) for t in snapshot.targets)
        return dataclasses.replace(snapshot, targets=targets, budgets=self._budgets.snapshot(now),
                                   unpriced=self._unpriced(snapshot))

    def _unpriced(self, snapshot: Snapshot) -> tuple[tuple[str, str], ...]:
        """Polled models whose usage has no price, and why: a list price not taken (its
        reason), else ``no_price``. Nothing while no pricing is configured at all, where
        every model is unpriced by choice."""
        pricing = self._book.config
        if not pricing.from_api and not pricing.models:
            return ()
        return tuple(sorted({
            (t.model, self._unlisted.get(t.account, {}).get(t.model, "no_price"))
            for t in (ts.target for ts in snapshot.targets)
            if self._book.price(t.account, t.model) is None}))

    def _target(self, t: TargetSnapshot, now: float) -> TargetSnapshot:
        # A target first seen here began counting in this process: all it counted is new.
        meter = self._meters.setdefault(t.target.ident, CostMeter())
        price = self._book.price(t.target.account, t.target.model)
        delta, amount = meter.charge(t.counters, price)
        currency = price.currency if price is not None else ""
        if delta.tokens or delta.requests or delta.image_generations:
            self._say_foreign(self._budgets.add(t.target, delta.tokens, amount, currency, now),
                              currency)
        window_cost: tuple[tuple[Window, str, Decimal], ...] = ()
        if price is not None:
            window_cost = tuple((w, price.currency, cost_of(totals, price))
                                for w, totals in t.windows)
        return dataclasses.replace(t, cost=tuple(sorted(meter.cost.items())),
                                   window_cost=window_cost)

    def seed(self, target: Target, days: Sequence[tuple[int, Totals]], now: float) -> None:
        """Add ``target``'s usage from before its counting began (by UTC day) to its budgets,
        priced at the prices in force now (see polling.seeding)."""
        price = self._book.price(target.account, target.model)
        priced = [(day, totals.tokens, None if price is None else cost_of(totals, price))
                  for day, totals in days]
        currency = price.currency if price else ""
        self._say_foreign(self._budgets.add_before(target, priced, currency, now), currency)

    def _say_foreign(self, budgets: Iterable[str], currency: str) -> None:
        """Log once per budget and currency that a money budget saw cost in another currency
        (it counts only its own: amounts in two currencies are never added)."""
        for name in budgets:
            if self._said.first((name, currency)):
                log.warning("budget %s counts only its own currency: cost in %s of targets it "
                            "selects is not counted in it (price those models in its currency, "
                            "or add a budget in %s)", name, currency, currency)

    def horizon(self, target: Target, at: int) -> int | None:
        """Where ``target``'s budget seed starts: the earliest start of the periods containing
        ``at`` of the budgets it falls under; None when none."""
        return self._budgets.horizon(target, at)

    def meters(self) -> dict[str, CostMeter]:
        """The cost meters by target ident, for the state document."""
        return dict(self._meters)

    def budget_use(self) -> dict[str, dict[str, object]]:
        """Each budget's use in its current period, for the state document."""
        return self._budgets.to_dict()
