"""What is polled now: one poller over the targets in force and, beside its ledgers, those of
the targets not polled now (parked), so a target that comes back (a reload, discovery)
continues where it stood. The poller is made anew whenever the target set changes; ledgers,
health and cost carry over, and nothing is rebased within a process."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from exporter.accounting.ledger import Ledger
from exporter.accounting.parked import Parked
from exporter.accounting.state import retarget
from exporter.config import Config
from exporter.polling.accounts import Accounts, grid_of
from exporter.polling.costing import Costing
from exporter.polling.poller import Poller
from exporter.polling.sharding import Shard

MakePoller = Callable[[Config, dict[str, Ledger]], Poller]
"""A poller of the config's targets with these ledgers (the service's client, pool, clocks)."""


class Polled:
    """The poller in force and the parked ledgers. Changed under the service's cycle lock."""

    def __init__(self, config: Config, known: Mapping[str, Ledger],
                 parked_since: Mapping[str, int], *, make: MakePoller, cost: Costing,
                 api_now: Callable[[], int]) -> None:
        self.parked = Parked()
        self._make, self._cost, self._api_now = make, cost, api_now
        self.poller = self._poll(config, known, parked_since)

    def retarget(self, effective: Config, *, reloaded: bool) -> None:
        """Poll ``effective``'s targets: kept and returning ones keep ledgers, health and cost
        and catch up everything they still have to; gone ones are parked. With ``reloaded``
        (an operator's change) permanent-error pauses end."""
        poller = self._poll(effective, self.known())
        poller.carry_health(self.poller, lift_pauses=reloaded)
        self.poller = poller

    def follow(self, accounts: Accounts, config: Config, shard: Shard, *, reloaded: bool) -> None:
        """Put ``config`` (reloaded) or the accounts' discovered targets in force: prices with
        each account's list prices, then the targets, re-made only when they changed."""
        self._cost.configure(config, *accounts.prices(config))
        effective = accounts.effective(config, shard)
        if reloaded or effective.targets != self.poller.targets:
            self.retarget(effective, reloaded=reloaded)

    def discover(self, accounts: Accounts, config: Config, shard: Shard, deadline: float) -> None:
        """Discovery (and API list prices) when due; a changed key set changes what is polled."""
        if accounts.refresh_targets(config, deadline):
            self.follow(accounts, config, shard, reloaded=False)

    def known(self) -> dict[str, Ledger]:
        """Every ledger, polled and parked (the polled ones under the poller's lock)."""
        return {**self.parked.ledgers(), **self.poller.ledgers()}

    def expire(self) -> None:
        """Forget the parked ledgers past their retention (and their cost meters)."""
        if self.parked.expire(self._api_now()):
            self._cost.sync(self.known())

    def _poll(self, config: Config, known: Mapping[str, Ledger],
              parked_since: Mapping[str, int] | None = None) -> Poller:
        """A poller of ``config``'s targets with their ``known`` ledgers; the rest parked."""
        ledgers = retarget(known, [t.ident for t in config.targets], grid_of(config),
                           config.poll.settle, origin=config.accounting.origin, audit=True)
        self.parked.unpark(ledgers)
        self.parked.park({i: led for i, led in known.items() if i not in ledgers},
                         parked_since or {}, self._api_now())
        self._cost.sync({**self.parked.ledgers(), **ledgers})
        return self._make(config, ledgers)
