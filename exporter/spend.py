"""Turns each cycle's exact counters into exact cost and budget use, and persists both."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal

from exporter.budgets import BudgetTracker
from exporter.configtypes import Config, ModelPrice, Window
from exporter.costs import CostDocument, CostMeter, CostStore
from exporter.ledger import Ledger
from exporter.pricing import PriceBook, cost_of
from exporter.snapshot import Snapshot, TargetSnapshot

log = logging.getLogger(__name__)


class Spend:
    """Cost meters per target, the price book in force, and the budgets' use this period."""

    def __init__(self, config: Config, store: CostStore | None) -> None:
        self.store = store  # replaced when state.path changes on reload
        doc = CostDocument()
        if store is not None:
            try:
                doc = store.load()
            except (OSError, ValueError) as error:
                log.error("%s; cost and budget use start from zero", error)
        self._meters = doc.meters
        self._book = PriceBook(config.pricing)
        self._budgets = BudgetTracker(config.budgets, doc.budgets)

    def configure(self, config: Config, listed: Iterable[ModelPrice] = ()) -> None:
        """Use ``config``'s prices and budgets from now on; cost already counted stays."""
        self._book = PriceBook(config.pricing).with_listed(listed)
        self._budgets = BudgetTracker(config.budgets, self._budgets.to_dict())

    def sync(self, ledgers: Mapping[str, Ledger]) -> None:
        """Meters for exactly these targets. A new meter starts at its ledger's counters, so
        usage counted before pricing existed (e.g. an older state file) is never priced."""
        self._meters = {ident: self._meters.get(ident) or CostMeter(seen=led.counters())
                        for ident, led in ledgers.items()}

    def apply(self, snapshot: Snapshot, now: float) -> Snapshot:
        """Price this cycle's increments; ``snapshot`` with cost and budgets filled in."""
        targets = tuple(self._target(t, now) for t in snapshot.targets)
        return dataclasses.replace(snapshot, targets=targets, budgets=self._budgets.snapshot(now))

    def _target(self, t: TargetSnapshot, now: float) -> TargetSnapshot:
        meter = self._meters.setdefault(t.target.ident, CostMeter(seen=t.counters))
        price = self._book.price(t.target.model)
        delta, amount = meter.charge(t.counters, price)
        currency = price.currency if price is not None else ""
        if delta.tokens or delta.requests or delta.image_generations:
            self._budgets.add(t.target, delta.tokens, amount, currency, now)
        window_cost: tuple[tuple[Window, str, Decimal], ...] = ()
        if price is not None:
            window_cost = tuple((w, price.currency, cost_of(totals, price))
                                for w, totals in t.windows)
        return dataclasses.replace(t, cost=tuple(sorted(meter.cost.items())),
                                   window_cost=window_cost)

    def save(self) -> None:
        """Write meters and budget use next to the state file; OSError when that fails."""
        if self.store is not None:
            self.store.save(CostDocument(dict(self._meters), self._budgets.to_dict()))
