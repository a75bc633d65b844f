"""Pacing: steady cycles spread target starts over the interval when that lowers peak load."""

from __future__ import annotations

import threading

import pytest

from exporter.accounting.ledger import Ledger
from exporter.config import ApiConfig, Config, PollConfig, Target
from exporter.core.clock import FakeClock
from exporter.core.usage import Reading, Totals
from exporter.polling.poller import SPREAD, Poller, start_gap
from exporter.polling.workers import WorkerPool
from tests.doubles import UsageDouble
from tests.pollers import make_poller


@pytest.mark.parametrize(("targets", "interval", "rate", "gap"), [
    (20, 60.0, 10.0, 1.5),  # 20 calls fit in 30 s at 10/s: spread them, 1.5 s apart
    (100, 60.0, 10.0, 0.3),
    (300, 60.0, 10.0, 0.0),  # 300 calls fill 30 s at 10/s: the limiter paces them anyway
    (1000, 60.0, 10.0, 0.0),
    (20, 60.0, 0.0, 0.0),  # no rate limit: the operator opted out of pacing
    (1, 60.0, 10.0, 0.0),
    (2, 60.0, 10.0, 15.0),  # the fewest targets that are spread
    (2, 60.0, 1.0, 15.0),  # 2 calls fit in 30 s at 1/s
    (30, 60.0, 1.0, 0.0),  # 30 calls fill 30 s at 1/s exactly
])
def test_start_gap(targets: int, interval: float, rate: float, gap: float) -> None:
    assert start_gap(targets, interval, rate) == pytest.approx(gap)


def test_spread_leaves_slack_in_the_interval() -> None:
    gap = start_gap(50, 60.0, 20.0)
    assert 49 * gap < SPREAD * 60.0 <= 0.5 * 60.0


def test_pool_hands_out_tasks_no_earlier_than_their_slot() -> None:
    clock, pool, lock = FakeClock(), WorkerPool(4), threading.Lock()
    starts: list[float] = []

    def task() -> None:
        with lock:
            starts.append(clock.monotonic())

    try:
        pool.run_all([task] * 10, gap=2.0, clock=clock)
    finally:
        pool.close()
    assert clock.monotonic() == pytest.approx(18.0)  # the feeder slept 9 gaps in all
    assert sorted(starts)[-1] >= 18.0
    assert all(s >= i * 2.0 for i, s in enumerate(sorted(starts)))


class _Recorder(UsageDouble):
    """A usage double that answers at once and notes when each call started."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self._lock = clock, threading.Lock()
        self.calls: list[float] = []

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        with self._lock:
            self.calls.append(self.clock.monotonic())
        return Reading(Totals(1, 1, 2, 1, 0))


def _poller(clock: FakeClock, source: _Recorder, count: int, rate: float) -> Poller:
    targets = tuple(Target(f"k{i}", "m", "p") for i in range(count))
    config = Config(api=ApiConfig(rate_limit=rate, max_concurrency=4),
                    poll=PollConfig(interval=60.0, settle=600, test_period=3600), windows=(),
                    targets=targets)
    ledgers = {t.ident: Ledger(int(clock.time()) - 60, 3600, 600) for t in targets}
    return make_poller(config, source, clock, WorkerPool(4), ledgers)


def test_first_cycle_starts_at_once_then_steady_cycles_are_spread() -> None:
    clock = FakeClock()
    source = _Recorder(clock)
    poller = _poller(clock, source, 20, rate=10.0)
    poller.cycle()
    assert max(source.calls) == 0.0  # nothing waited: a new target is read at once
    source.calls.clear()
    began = clock.monotonic()
    poller.cycle()
    offsets = sorted(c - began for c in source.calls)
    assert len(offsets) == 20
    assert offsets[-1] == pytest.approx(19 * 1.5)  # 30 s of spread, 1.5 s apart
    assert offsets[-1] < SPREAD * 60.0


def test_unlimited_rate_never_spreads() -> None:
    clock = FakeClock()
    source = _Recorder(clock)
    poller = _poller(clock, source, 20, rate=0.0)
    poller.cycle()
    poller.cycle()
    assert max(source.calls) == 0.0
