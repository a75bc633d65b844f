"""The start of counting: the first cycles learn the API's clock, ask a peer once (with
``ha.peers``), and, once answers agree on the API's time, rebase the ledgers loaded from the
state file for the time the process was down: the one place ``state.max_backfill`` applies
(a reload or a discovery change never rebases).

Lock discipline: :meth:`Startup.ask` makes network calls (the API's clock, a peer) and is
called with no lock held; :meth:`Startup.rebase` changes the loaded ledgers under the poller's
lock and is called under the service's cycle lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from exporter.accounting.ledger import Ledger
from exporter.accounting.state import restart
from exporter.api.clock import ApiClock
from exporter.api.sources import UsageApi
from exporter.config import Config
from exporter.core.clock import Clock
from exporter.polling.accounts import grid_of
from exporter.polling.pairing import Pairing
from exporter.polling.peers import Fetched
from exporter.polling.poller import Poller

log = logging.getLogger(__name__)


class Startup:
    """What is left to do before counting runs as usual; done once both steps ran."""

    def __init__(self, loaded: Mapping[str, Ledger], clock: Clock, api_clock: ApiClock) -> None:
        self._loaded: dict[str, Ledger] | None = dict(loaded)
        self._clock, self._api_clock = clock, api_clock
        self._started = clock.monotonic()  # the ledgers are rebased to the API time of this
        self._peers_due = True  # asked once, when the API's clock is first known

    @property
    def done(self) -> bool:
        """Whether the loaded ledgers were rebased (counting runs as usual)."""
        return self._loaded is None

    def ask(self, client: UsageApi, poller: Poller, config: Config, pairing: Pairing,
            deadline: float) -> tuple[Fetched, Config] | None:
        """Learn the API's clock; once it is known, ask a peer (once, before the first read:
        a peer's settled days need no reading): its answer, with the config it was asked for.
        No lock held."""
        if self.done:
            return None
        unanswered = client.sync_clock(deadline)
        if not self._api_clock.known:
            poller.status.no_answer(unanswered)  # each waiting target says why
            return None
        if not self._peers_due:
            return None
        self._peers_due = False
        fetched = pairing.fetch(config, lambda: int(self._api_clock.now()), self._clock,
                                grid_of(config))
        return None if fetched is None else (fetched, config)

    def rebase(self, config: Config, poller: Poller, skipped: Callable[[int], None]) -> None:
        """Once answers agree on the API's time, rebase the loaded ledgers (polled and parked)
        by that clock at the moment of the start (never ahead of it, see api.clock: an outage
        after it is caught up like any other); meanwhile they are read, but nothing closes.
        With an origin, counters are defined from it: the whole downtime is caught up.
        Under the cycle lock."""
        if self._loaded is None or not self._api_clock.settled:
            return
        loaded, self._loaded = self._loaded, None
        backfill = config.state.max_backfill if config.accounting.origin is None else 2**40
        with poller.locked():
            result = restart(loaded, int(self._api_clock.at(self._started)), grid_of(config),
                             config.poll.settle, backfill, origin=config.accounting.origin,
                             audit=True)
        if result.skipped_seconds:
            skipped(result.skipped_seconds)
            log.warning("state is older than state.max_backfill: %d seconds of usage skipped",
                        result.skipped_seconds)
