"""A poller on a fake clock, for the unit tests of the poll cycle."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.apibuckets import BucketMeter
from exporter.apiclock import ApiClock
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.ledger import Ledger
from exporter.poller import Poller, UsageSource
from exporter.workers import WorkerPool


def make_poller(config: Config, source: UsageSource, clock: FakeClock, pool: WorkerPool,
                ledgers: Mapping[str, Ledger]) -> Poller:
    """A poller whose API clock is the fake clock (the API's Date agrees with it), past its
    start probe for the API's buckets (tests/test_apibuckets.py covers it)."""
    buckets = BucketMeter()
    buckets.probed = True
    return Poller(config, source, clock, pool, ledgers, ApiClock.trusting(clock),
                  buckets=buckets)
