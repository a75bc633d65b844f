"""The cost of what is counted, as the poll loop drives it: prices (configured, and listed per
account), cost meters and budgets (accounting.spend), and the budget seeds of new targets
(polling.seeding), kept together because a seed is priced and added to the budgets it was read
for, once."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from exporter.accounting.ledger import Ledger
from exporter.accounting.snapshot import Snapshot
from exporter.accounting.spend import Spend
from exporter.accounting.state import StateDocument
from exporter.config import Config, ModelPrice
from exporter.polling.seeding import Horizon, Seeding

log = logging.getLogger(__name__)


class Costing:
    """Prices, meters, budgets and seeds. Used under the service's cycle lock."""

    def __init__(self, config: Config, doc: StateDocument) -> None:
        self.spend = Spend(config, doc.meters, doc.budgets)
        self.seeding = Seeding(doc.seeds, self._horizon(config))
        self._seeds_due = bool(doc.seeds)  # to say once when the last seed is counted

    def _horizon(self, config: Config) -> Horizon | None:
        """Where new targets' budget seeds start (None without budgets: nothing to seed)."""
        return self.spend.horizon if config.budgets else None

    def configure(self, config: Config, listed: Mapping[str, Iterable[ModelPrice]],
                  unlisted: Mapping[str, Mapping[str, str]]) -> None:
        """``config``'s prices, budgets and seed horizon, with each account's list prices."""
        self.spend.configure(config, listed, unlisted)
        self.seeding.configure(self._horizon(config))

    def sync(self, ledgers: Mapping[str, Ledger]) -> None:
        """Meters for exactly these ledgers (polled and parked)."""
        self.spend.sync(ledgers)

    def seeds_left(self, polled: Iterable[str]) -> set[str]:
        """Polled targets whose budget seed is still to be read (a parked one's waits)."""
        return set(self.seeding.pending()) & set(polled)

    def priced(self, snapshot: Snapshot, now: float, polled: Iterable[str]) -> Snapshot:
        """``snapshot`` with this cycle's cost and budget use, the seeds read since counted.
        Call under the poller's lock (a state written meanwhile shows a seed pending or
        counted, and a meter's counters with their cost)."""
        for seed in self.seeding.take_done():
            self.spend.seed(seed.target, seed.days, now)
            self._seeds_due = True
        snapshot = self.spend.apply(snapshot, now)
        if self._seeds_due and not self.seeds_left(polled):
            self._seeds_due = False
            log.info("budget seeding done: every budget holds its period's usage from before "
                     "counting began")
        return snapshot

    def state(self, ledgers: dict[str, Ledger], parked: dict[str, int]) -> StateDocument:
        """The state document: ledgers (polled and parked), cost, budgets and seeds together."""
        return StateDocument(ledgers, parked, self.spend.meters(), self.spend.budget_use(),
                             self.seeding.pending())
