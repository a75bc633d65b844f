"""The API's window semantics through the real process: the simulator plays APIs that bucket
time differently, and the exporter measures, adapts, and never publishes a counter it cannot
stand behind.

The simulator's clock is set a little before an hour (or a UTC+8 midnight) by the API's time;
its ``Date`` header tells the exporter, which plans by the API's clock, so the tests see a bucket
boundary pass within seconds. Nine days of history let the start probe measure the bucket
before counting begins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import BucketPolicy, Event, EventStore, SimulatorServer
from tests import fleet
from tests.harness import Exporter, Series, wait_for

pytestmark = pytest.mark.e2e

KEY = "k-buckets"
H, DAY = 3600, 86400
SETTLE = 3
USE = Totals(3, 2, 5, 1, 0)


class ShiftedClock(SystemClock):
    """Real time moved so that the first reading is ``lead`` seconds before the next bucket
    start of ``policy`` (monotonic time is real)."""

    def __init__(self, policy: BucketPolicy, lead: float) -> None:
        now = time.time()
        boundary = policy.label(int(now) + 10 * DAY) + policy.seconds  # a future bucket start
        self.boundary = boundary
        self.shift = boundary - lead - now

    def time(self) -> float:
        return time.time() + self.shift


def one(samples: dict[Series, float], name: str) -> float | None:
    return samples.get((name, frozenset()))


@contextmanager
def api(policy: BucketPolicy, lead: float) -> Iterator[tuple[SimulatorServer, ShiftedClock]]:
    """A simulator bucketing as ``policy`` says, ``lead`` seconds before a bucket starts, with
    a use every 67 s over the nine days before (minute labels show minute steps; daily buckets
    need 8 labels, days, to be believed)."""
    clock = ShiftedClock(policy, lead)
    store = EventStore()
    now = int(clock.time())
    for ts in range(now - 9 * DAY, now - 60, 67):
        store.add(Event(ts, ts, fleet.PROJECT, KEY, fleet.MODEL, fleet.sim_usage(USE)))
    with SimulatorServer(store, {fleet.PUBLIC: fleet.PRIVATE}, clock, buckets=policy) as sim:
        yield sim, clock


def config(url: str, period: str = "10s") -> dict[str, object]:
    return fleet.fleet_config(url, [KEY], poll={"interval": "1s", "settle": f"{SETTLE}s",
                                                "period": period, "window_interval": "1h"})


def add(sim: SimulatorServer, clock: ShiftedClock, ts: int | None = None) -> int:
    at = int(clock.time()) if ts is None else ts
    sim.store.add(Event(at, at, fleet.PROJECT, KEY, fleet.MODEL, fleet.sim_usage(USE)))
    return at


def truth(sim: SimulatorServer, start: int, end: int) -> Totals:
    return fleet.as_totals(sim.store.truth(fleet.PROJECT, KEY, fleet.MODEL, start, end))


def watch(child: Exporter, sim: SimulatorServer, clock: ShiftedClock, until: float,
          origin: int) -> Totals:
    """Scrape until the API's time passes ``until``; every scrape must show no more than the
    usage from ``origin`` on. The last counters seen."""
    last = Totals()
    while clock.time() < until:
        seen = fleet.counters(child.metrics(), KEY)
        if seen is not None:
            limit = truth(sim, origin, int(clock.time()) + 1)
            assert limit.dominates(seen), f"published {seen}, more than the {limit} that exist"
            last = seen
        time.sleep(0.3)
    return last


@pytest.mark.parametrize(("policy", "cell"), [
    (BucketPolicy(H, 0, "outward"), H),
    (BucketPolicy(H, 0, "buckets"), H),
    (BucketPolicy(DAY, 8 * H, "outward"), DAY),
    (BucketPolicy(DAY, 8 * H, "buckets"), DAY),
], ids=["hourly-outward", "hourly-whole", "utc8-daily-outward", "utc8-daily-whole"])
def test_coarse_buckets_are_measured_at_start_and_counted_exactly(
        tmp_path: Path, policy: BucketPolicy, cell: int) -> None:
    with api(policy, lead=12) as (sim, clock), \
            fleet.exporter(tmp_path, config(sim.url)) as child:
        started = clock.time()
        # Found within one settle of the start, before anything is counted.
        wait_for(lambda: one(child.metrics(), "uminfer_api_bucket_seconds") == cell,
                 SETTLE + 5, f"the API's bucket measured as {cell} s")
        metrics = child.metrics()
        assert one(metrics, "uminfer_accounting_period_seconds") == cell
        assert clock.time() - started < SETTLE + 5
        assert f"buckets of {cell} s" in child.log()
        # Usage in the bucket the exporter started in cannot be told apart from the usage before
        # the start: counting begins at the next bucket start.
        boundary = clock.boundary
        add(sim, clock)
        wait_for(lambda: clock.time() > boundary + 1, 20, "the bucket boundary to pass")
        for _ in range(3):
            add(sim, clock)
            time.sleep(0.5)
        last = watch(child, sim, clock, boundary + 4 + SETTLE, boundary)
        wait_for(lambda: fleet.counters(child.metrics(), KEY) == truth(sim, boundary, boundary + H),
                 10, "the counters to equal the usage since the bucket start")
        assert last == Totals() or truth(sim, boundary, boundary + H).dominates(last)
        metrics = child.metrics()
        assert one(metrics, "uminfer_api_answers_held_total") == 0
        assert one(metrics, "uminfer_api_additivity_errors_total") == 0
        assert fleet.value(metrics, "uminfer_given_up_seconds_total", KEY) == 0


def test_minute_buckets_change_nothing_and_cost_no_extra_calls(tmp_path: Path) -> None:
    policy = BucketPolicy(60)  # the simulator's own: exact timestamps, minute labels
    with api(policy, lead=8) as (sim, clock), \
            fleet.exporter(tmp_path, config(sim.url, period="60s")) as child:
        wait_for(lambda: one(child.metrics(), "uminfer_api_bucket_seconds") == 60, SETTLE + 5,
                 "the API's bucket measured as 60 s")
        boundary = clock.boundary  # counting begins at the first minute after the start
        wait_for(lambda: clock.time() > boundary + 1, 20, "the minute to pass")
        sim.reset_stats()
        polled_from = clock.time()
        for _ in range(8):
            add(sim, clock)
            time.sleep(1)
        wait_for(lambda: fleet.counters(child.metrics(), KEY)
                 == truth(sim, boundary, int(clock.time())), 10, "the usage counted exactly")
        calls = sim.stats().by_action.get("GetUMInferTokenUsage", 0)
        polls = clock.time() - polled_from  # one poll a second
        metrics = child.metrics()
        assert one(metrics, "uminfer_accounting_period_seconds") == 60
        for name in ("uminfer_api_answers_held_total", "uminfer_api_additivity_errors_total",
                     "uminfer_accounting_refused"):
            assert one(metrics, name) == 0, name
        assert fleet.value(metrics, "uminfer_given_up_seconds_total", KEY) == 0
        # One call per poll for the open period, plus the closing read of the minute that
        # passed (no window gauges here): as docs/performance.md says, nothing more.
        assert calls <= polls + 3, f"{calls} usage calls in {polls:.1f} one-second polls"


def test_outward_rounding_without_labels_is_caught_by_the_audit(tmp_path: Path) -> None:
    # No Usages rows: the bucket cannot be measured, windows are counted as if exact, and
    # adjacent 10 s periods each get the whole hour. The audit's one read over them shows it.
    policy = BucketPolicy(H, 0, "outward", rows=False)
    with api(policy, lead=600) as (sim, clock), \
            fleet.exporter(tmp_path, config(sim.url)) as child:
        for _ in range(4):
            add(sim, clock)
            time.sleep(1)
        wait_for(lambda: (one(child.metrics(), "uminfer_api_additivity_errors_total") or 0) > 0,
                 40, "an additivity error from the audit")
        metrics = child.metrics()
        assert (one(metrics, "uminfer_api_additivity_excess_tokens_total") or 0) > 0
        bucket = one(metrics, "uminfer_api_bucket_seconds")
        assert bucket is not None and bucket != bucket  # NaN: nothing to measure it from
        assert "fewer than the sum of their final readings" in child.log()
