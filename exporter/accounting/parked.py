"""Parked ledgers: targets not polled now (removed by a reload, gone from discovery), kept with
the API time since which they are parked, so a target that returns continues its counters.

One structure with its own lock: the poll loop parks and unparks, the state writer and the
peer endpoint (``/-/ledgers``, another thread) read copies, and expiry forgets the old ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from exporter.accounting.ledger import Ledger

log = logging.getLogger(__name__)

#: How long a parked ledger is kept (API seconds).
RETENTION = 31 * 86400


class Parked:
    """Ledgers by ident, each with the API second it was parked at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str, Ledger] = {}
        self._since: dict[str, int] = {}

    def park(self, ledgers: Mapping[str, Ledger], since: Mapping[str, int], now: int) -> None:
        """Park ``ledgers`` (those parked already keep their time), each since ``since`` or
        ``now``."""
        with self._lock:
            for ident, led in ledgers.items():
                if ident not in self._ledgers:
                    self._ledgers[ident] = led
                    self._since[ident] = since.get(ident, now)

    def unpark(self, idents: Iterable[str]) -> None:
        """Stop holding ``idents`` (they are polled again)."""
        with self._lock:
            for ident in idents:
                self._ledgers.pop(ident, None)
                self._since.pop(ident, None)

    def ledgers(self) -> dict[str, Ledger]:
        """A copy of the parked ledgers."""
        with self._lock:
            return dict(self._ledgers)

    def since(self) -> dict[str, int]:
        """A copy of when each was parked."""
        with self._lock:
            return dict(self._since)

    def expire(self, now: int, retention: int = RETENTION) -> list[str]:
        """Forget those parked before ``now - retention`` (said once per batch); their idents,
        sorted."""
        cutoff = now - retention
        with self._lock:
            old = sorted(ident for ident, since in self._since.items() if since < cutoff)
            for ident in old:
                del self._ledgers[ident], self._since[ident]
        if old:
            log.info("forgot %d targets not polled for %d days: %s", len(old),
                     retention // 86400, ", ".join(old[:5]))
        return old
