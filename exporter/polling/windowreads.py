"""The trailing-window gauges of a target, read every ``poll.window_interval``: the widest
window read in slices of at most a day, each narrower one summed from that answer's rows
(accounting.windows) where no bucket straddles its start, else read on its own (said once).
A failed read leaves the gauges at their last values: the target stays up and counting."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from exporter.accounting.windows import WindowRows, aligned_end, window_slices
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.sources import UsageApi
from exporter.config import Config, Target, Window
from exporter.core.clock import Clock
from exporter.core.grid import Grid
from exporter.core.usage import ZERO, Totals
from exporter.polling.status import PollStatus

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WindowGauges:
    """One target's window gauges: their values, the API time they end at, when they are read
    next (monotonic) and the last failure said about them."""

    values: tuple[tuple[Window, Totals], ...] = ()
    at: float | None = None
    next_read: float = 0.0
    problem: str | None = None


class WindowReader:
    """Reads the window gauges of the targets of one poller."""

    # The collaborators are the poller's own; keywords would not make the call clearer.
    def __init__(self, config: Config, source: UsageApi, clock: Clock,  # noqa: PLR0917
                 api_clock: ApiClock, buckets: BucketMeter, status: Callable[[], PollStatus],
                 for_call: Callable[[float], float]) -> None:
        self._config, self._source, self._clock = config, source, clock
        self._api_clock, self._buckets, self._status = api_clock, buckets, status
        self._for_call = for_call  # the deadline one call gets (see Poller._for_call)

    def poll(self, target: Target, grid: Grid, gauges: WindowGauges, failures: Counter[str],
             deadline: float) -> None:
        """Read the gauges when due; an API failure is counted in ``failures`` and said once
        (anything else raised is the caller's: see failed_internally)."""
        try:
            self._read(target, grid, gauges, deadline)
        except ApiError as error:
            failures[error.category] += 1
            if error.message != gauges.problem:
                log.warning("target %s: window gauges not read: %s", target.ident, error.message)
                gauges.problem = error.message
        else:
            gauges.problem = None

    @staticmethod
    def failed_internally(target: Target, failures: Counter[str], error: Exception) -> None:
        """``poll`` raised ``error``, a bug: counted as an "internal" failure and logged with
        its traceback; the gauges keep their last values."""
        log.error("internal error reading windows of target %s", target.ident, exc_info=error)
        failures["internal"] += 1

    def _read(self, target: Target, grid: Grid, gauges: WindowGauges, deadline: float) -> None:
        """Read the widest window; each narrower one is the sum of its answer's rows from the
        narrower window's start where no bucket straddles that, else it is read on its own."""
        started = self._clock.monotonic()
        if started < gauges.next_read or not self._config.windows:
            return
        if started >= deadline:
            return  # out of budget: the gauges keep their last values and time stamp
        width = self._buckets.width
        end = aligned_end(grid, int(self._api_clock.now()), width)
        widest = max(self._config.windows, key=lambda window: window.seconds)
        rows = WindowRows(end, width)
        sums = {widest: self._window(target, grid, end, widest.seconds, deadline=deadline,
                                     rows=rows)}
        for window in self._config.windows:
            if window not in sums:
                total = rows.total(window.seconds)
                if isinstance(total, str):
                    self._status().window_read_alone(window.name, total)
                    total = self._window(target, grid, end, window.seconds, deadline=deadline)
                sums[window] = total
        gauges.values = tuple((window, sums[window]) for window in self._config.windows)
        gauges.at = float(end)
        gauges.next_read = started + self._config.poll.window_interval

    def _window(self, target: Target, grid: Grid, end: int, seconds: int, *,
                deadline: float, rows: WindowRows | None = None) -> Totals:
        """The API's totals over the window of ``seconds`` ending at ``end``, in <= 1-day
        slices whose answers ``rows`` takes."""
        totals = ZERO
        for start, stop in window_slices(end, seconds):
            reading = self._source.get_usage(target, start, stop, self._for_call(deadline))
            self._buckets.answered(grid, start, stop, reading.labels)
            if rows is not None:
                rows.add(reading)
            totals += reading.totals
        return totals
