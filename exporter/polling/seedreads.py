"""The reads of a new target's budget seed (polling.seeding): the due UTC days from its budget
periods' start up to its origin, each once it has settled, a few a poll. A failed read is read
again next poll; a range the API rejects for good, or days that do not start on the API's
buckets, give the seed up (said once per reason)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.accounting.ledger import Ledger
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.sources import UsageApi
from exporter.config import Config, Target
from exporter.core.clock import Clock
from exporter.core.grid import DAY
from exporter.polling.seeding import Seeding

log = logging.getLogger(__name__)

STRADDLED = ("the API's buckets straddle UTC midnight, so no read can hold exactly the UTC days "
             "before counting began")


class SeedReader:
    """Reads the budget seeds of the targets of one poller."""

    # The collaborators are the poller's own; keywords would not make the call clearer.
    def __init__(self, config: Config, source: UsageApi, clock: Clock,  # noqa: PLR0917
                 api_clock: ApiClock, buckets: BucketMeter,
                 for_call: Callable[[float], float]) -> None:
        self._config, self._source, self._clock = config, source, clock
        self._api_clock, self._buckets, self._for_call = api_clock, buckets, for_call

    def read(self, target: Target, ledger: Ledger | None, seeding: Seeding,
             deadline: float) -> None:
        """Read the target's due seed days, as its ``ledger`` stands."""
        if ledger is None or ledger.fresh or not self._api_clock.settled:
            return  # where counting begins is known at its baseline; which days are done, by
            # a settled clock
        origin, now, grid = ledger.origin, int(self._api_clock.now()), ledger.grid
        slices = seeding.plan(target, origin, now - self._config.poll.settle)
        seeding.baseline(target, origin, ledger.baseline)
        for start, end in slices:
            if self._buckets.width == DAY and not grid.on_line(start):
                self._given_up(target, seeding, STRADDLED)
                return
            if self._clock.monotonic() >= deadline:
                return
            try:
                reading = self._source.get_usage(target, start, end, self._for_call(deadline))
            except ApiError as error:
                if not error.transient:
                    self._given_up(target, seeding, error.message)
                return
            self._buckets.answered(grid, start, end, reading.labels)
            if reading.labels and min(reading.labels) < start:
                self._given_up(target, seeding, STRADDLED)
                return
            seeding.record(target, origin, start, reading.totals)

    @staticmethod
    def _given_up(target: Target, seeding: Seeding, reason: str) -> None:
        if seeding.drop(target.ident, reason):
            log.warning("budget seeding given up for %s (and any other target for the same "
                        "reason): %s; its budgets count its usage from when counting began",
                        target.ident, reason)
