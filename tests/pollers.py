"""A poller on a fake clock, for the unit tests of the poll cycle."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.accounting.ledger import Ledger
from exporter.api.clock import ApiClock
from exporter.api.sources import UsageApi
from exporter.config import Config
from exporter.core.clock import FakeClock
from exporter.polling.poller import Poller
from exporter.polling.workers import WorkerPool


def make_poller(config: Config, source: UsageApi, clock: FakeClock, pool: WorkerPool,
                ledgers: Mapping[str, Ledger]) -> Poller:
    """A poller whose API clock is the fake clock (the API's Date agrees with it)."""
    return Poller(config, source, clock, pool, ledgers, ApiClock.trusting(clock))
