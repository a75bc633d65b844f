"""Count from the first poll, whatever the API's buckets: through the real process, on the grid
it runs on in production (the provider's days), against the simulator playing each API.

The simulator's clock is set a few seconds before a provider midnight (16:00 UTC) by the API's
time; its ``Date`` header tells the exporter, which plans by the API's clock, so each test sees
a day close within seconds. Usage is sparse (nine days of one use an hour before the start);
every scrape must show the target up, no counter above the usage since the first poll, and no
counter going down; once each use is visible the counters equal exactly the usage added since
the first poll, late usage included, across the midnight.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.core.clock import SystemClock
from exporter.core.grid import Grid
from exporter.core.usage import Totals
from exporter.simulator import BucketPolicy, Event, EventStore, SimulatorServer
from tests import fleet
from tests.harness import Exporter, Series, wait_for

pytestmark = pytest.mark.e2e

KEY = "k-buckets"
H, DAY = 3600, 86400
SETTLE = 4
USE = Totals(3, 2, 5, 1, 0)
LEAD = 20  # seconds from the exporter's start to the provider midnight


class ShiftedClock(SystemClock):
    """Real time moved so that the first reading is ``lead`` seconds before a provider
    midnight (monotonic time is real)."""

    def __init__(self, lead: float) -> None:
        now = time.time()
        self.midnight = Grid().start(int(now) + 10 * DAY)  # a future provider midnight
        self.shift = self.midnight - lead - now

    def time(self) -> float:
        return time.time() + self.shift


@contextmanager
def api(policy: BucketPolicy) -> Iterator[tuple[SimulatorServer, ShiftedClock]]:
    """A simulator bucketing as ``policy`` says, LEAD seconds before a provider midnight, with
    one use an hour over the nine days before."""
    clock = ShiftedClock(LEAD)
    store = EventStore()
    now = int(clock.time())
    for ts in range(now - 9 * DAY, now - 60, H):
        store.add(Event(ts, ts, fleet.PROJECT, KEY, fleet.MODEL, fleet.sim_usage(USE)))
    with SimulatorServer(store, {fleet.PUBLIC: fleet.PRIVATE}, clock, buckets=policy) as sim:
        yield sim, clock


def config(url: str) -> dict[str, Any]:
    """The fleet's config: the provider's days, as in production (no hidden test period)."""
    return fleet.fleet_config(url, [KEY], poll={"interval": "1s", "settle": f"{SETTLE}s"},
                              advanced={"window_interval": "1h"})


class Watch:
    """Scrapes, each checked against the usage added since the first poll."""

    def __init__(self, child: Exporter, sim: SimulatorServer, clock: ShiftedClock) -> None:
        self.child, self.sim, self.clock = child, sim, clock
        self.added = Totals()  # usage added after the first poll, all visible at once
        self.last = Totals()

    def add(self, ts: int | None = None) -> None:
        at = int(self.clock.time())
        self.sim.store.add(Event(at if ts is None else ts, at, fleet.PROJECT, KEY, fleet.MODEL,
                                 fleet.sim_usage(USE)))
        self.added += USE

    def scrape(self) -> dict[Series, float]:
        metrics = self.child.metrics()
        seen = fleet.counters(metrics, KEY)
        assert seen is not None, "counters not exported"
        assert fleet.value(metrics, "uminfer_up", KEY) == 1, "target down"
        assert seen.dominates(self.last), f"went down: {self.last} -> {seen}"
        assert self.added.dominates(seen), f"published {seen}, more than the {self.added} added"
        self.last = seen
        return metrics

    def until_counted(self, what: str) -> None:
        wait_for(lambda: fleet.counters(self.scrape(), KEY) == self.added, 10,
                 lambda: f"{what}: counters {self.last}, usage added {self.added}")


def run(tmp_path: Path, policy: BucketPolicy, change: BucketPolicy | None = None) -> Watch:
    """Start, use, cross the midnight (changing the API's buckets, if asked, on the way);
    every use counted exactly from the first poll on. The watch, for more checks."""
    with api(policy) as (sim, clock), fleet.exporter(tmp_path, config(sim.url)) as child:
        watch = Watch(child, sim, clock)
        first = watch.scrape()  # the first scrape after the first poll: counters at 0
        assert fleet.counters(first, KEY) == Totals()
        watch.add()
        watch.until_counted("a use after the first poll")
        watch.add(int(clock.time()) - 30)  # late: timestamped before the start, same day
        watch.until_counted("a late use of the day counting began in")
        if change is not None:
            sim.buckets = change  # the API's buckets change mid-run
        wait_for(lambda: clock.time() > clock.midnight + 1, LEAD + 5, "the provider midnight")
        watch.add(clock.midnight - 1)  # late for the day that just ended, within settle
        watch.add()
        watch.until_counted("uses on both sides of the midnight")
        wait_for(lambda: watch.scrape().get(("uminfer_settled_timestamp_seconds", fleet.labels(
            KEY))) == clock.midnight - 1, SETTLE + 10, "the day to settle")
        watch.add()
        watch.until_counted("a use in the new day")
        metrics = watch.scrape()
        assert fleet.value(metrics, "uminfer_given_up_seconds_total", KEY) == 0
        assert metrics[("uminfer_api_labels_off_grid_total", frozenset())] == 0
        assert "not yet" not in child.log() and "held" not in child.log()
        return watch


@pytest.mark.parametrize("policy", [
    BucketPolicy(60), BucketPolicy(H), BucketPolicy(DAY, 8 * H),
    BucketPolicy(H, 0, "buckets"), BucketPolicy(H, 0, "outward"),
    BucketPolicy(DAY, 8 * H, "buckets"), BucketPolicy(DAY, 8 * H, "outward"),
], ids=["exact-minute-labels", "exact-hourly-labels", "exact-daily-labels",
        "hourly-whole", "hourly-outward", "utc8-daily-whole", "utc8-daily-outward"])
def test_counting_begins_at_the_first_poll_and_stays_exact_across_the_midnight(
        tmp_path: Path, policy: BucketPolicy) -> None:
    run(tmp_path, policy)


def test_buckets_changing_mid_run_change_nothing(tmp_path: Path) -> None:
    run(tmp_path, BucketPolicy(60), change=BucketPolicy(H, 0, "outward"))
