"""The pair (``ha.peers``): the settled ledgers this replica serves on ``/-/ledgers``, and the
bootstrap that takes a peer's once, at start, before the first read.

Lock discipline (nothing here holds two locks, and no lock is held across a network call):

- :meth:`Pairing.fetch` calls the peers (polling.peers) and is made with **no lock held**: a
  slow peer never holds up a reload, a stop or a scrape.
- :meth:`Pairing.take` changes the poller's ledgers; the caller holds the service's cycle lock
  and passes the config the fetch was made for: if a reload put another in force meanwhile,
  the answer is moot and nothing is taken.
- :meth:`Pairing.document` runs on the HTTP server's threads: it renders under the poller's
  lock (ledgers change under it); the parked ledgers are copied under their own.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from exporter.accounting.handoff import Terms, fingerprint, render, takeover
from exporter.accounting.state import GridOf
from exporter.config import Config
from exporter.core.clock import Clock
from exporter.polling.peers import Fetched, fetch
from exporter.polling.polled import Polled
from exporter.polling.poller import Poller
from exporter.polling.seeding import Seeding

log = logging.getLogger(__name__)


def terms(config: Config, origin: int) -> Terms:
    """What a peer's settled values must share with this replica's (see accounting.handoff)."""
    return Terms(origin, config.poll.settle,
                 tuple(sorted((name, fingerprint(api.public_key))
                              for name, api in config.account_apis().items())))


class Pairing:
    """One replica's side of the pair."""

    def __init__(self) -> None:
        self.replica = secrets.token_hex(8)  # names it in /-/ledgers: never its own peer

    def fetch(self, config: Config, api_now: Callable[[], int], clock: Clock,
              grid_of: GridOf) -> Fetched | None:
        """A peer's checked settled ledgers, or None (said in the log). No lock held."""
        origin = config.accounting.origin
        if not config.ha.peers or origin is None:
            return None
        fetched = fetch(config.ha, terms(config, origin), api_now, clock,
                        replica=self.replica, grid_of=grid_of)
        if fetched is None:
            log.warning("no peer gave its ledgers: catching up from accounting.origin through "
                        "the API (uminfer_catchup_remaining_seconds says how far it has to go)")
        return fetched

    @staticmethod
    def take(fetched: Fetched, made_for: Config, *, config: Config, poller: Poller,
             seeding: Seeding, grid_of: GridOf) -> int:
        """Put the peer's newer ledgers into ``poller`` for the targets that have none or an
        older one (accounting.handoff.takeover); how many took one. Under the cycle lock."""
        if config is not made_for:
            log.warning("the config was reloaded during the call to peer %s: its ledgers are "
                        "not taken; catching up from the API", fetched.url)
            return 0
        polled = {t.ident for t in poller.targets}
        with poller.locked():
            mine = poller.ledgers()
        taken = takeover(fetched.handoff.ledgers, mine, polled)
        for ident, led in taken.items():
            led.retune(grid_of(ident), config.poll.settle)
            led.audit = True
            if ident not in mine:
                seeding.begin(ident)
            poller.adopt(ident, led)
        log.info("bootstrapped %d of %d targets from peer %s in %.3fs (one call); the rest "
                 "catch up from the API", len(taken), len(polled), fetched.url, fetched.seconds)
        return len(taken)

    def document(self, config: Config, polled: Polled, grid_of: GridOf) -> bytes:
        """The settled ledgers of every target (polled and parked) for a peer: only those that
        count every second from ``accounting.origin`` (an empty list without one)."""
        origin = config.accounting.origin
        with polled.poller.locked():
            own = {} if origin is None else {
                ident: led for ident, led in polled.known().items()
                if led.counts_from(grid_of(ident).start(origin))}
            return render(terms(config, origin or 0), own, replica=self.replica)
