"""The API's buckets, measured from the labels of its answers, and the grid that follows them.

Every expected value is computed by hand here (see the comments), not by the code under test.
"""

from __future__ import annotations

import logging

import pytest

from exporter.accounting.ledger import Ledger
from exporter.api.buckets import CONFIDENT, BucketMeter, Grid, Refusal
from exporter.api.clock import ApiClock
from exporter.config import ApiConfig, Config, PollConfig, Target
from exporter.core.clock import FakeClock
from exporter.core.usage import Reading, Totals
from exporter.polling.poller import Poller
from exporter.polling.workers import WorkerPool

H, DAY = 3600, 86400
T0 = 1_700_006_400  # a UTC midnight (1_700_006_400 / 86400 = 19676.0)
UTC8 = T0 - 8 * H  # 16:00 UTC the day before: where a UTC+8 day starts


class Observer:
    def __init__(self) -> None:
        self.errors: list[int] = []
        self.holds = 0

    def additivity_error(self, excess_tokens: int) -> None:
        self.errors.append(excess_tokens)

    def held(self) -> None:
        self.holds += 1


def every(step: int, first: int = T0, n: int = CONFIDENT) -> list[int]:
    """``n`` labels ``step`` apart: enough for a measurement to be believed."""
    return [first + i * step for i in range(n)]


def test_nothing_measured_keeps_the_configured_grid() -> None:
    meter = BucketMeter()
    assert meter.bucket is None and meter.needs_probe
    assert meter.grid(60) == Grid(60)
    meter.observe([T0 + 120])  # one label says nothing about a width
    assert meter.grid(60) == Grid(60)


@pytest.mark.parametrize(("labels", "period", "want"), [
    # minute labels under a 1 h period: the hour is a multiple, nothing changes
    (every(60), 3600, Grid(3600, 0, 60)),
    # hourly labels under a 60 s period: periods become the hour
    (every(H), 60, Grid(H, 0, H, adapted=True)),
    # hourly labels under a 7200 s period: already a multiple
    (every(H), 7200, Grid(7200, 0, H)),
    # labels 3 h apart under 7200 s: 10800 s, which divides a day
    (every(3 * H), 7200, Grid(10800, 0, 10800, adapted=True)),
    # daily labels at 16:00 UTC (UTC+8 days) under 1 h: a day, cut at 16:00 (57600 s)
    (every(DAY, UTC8), 3600, Grid(DAY, 16 * H, DAY, adapted=True)),
    # 15-minute buckets under a 10-minute period: 15 minutes divide a day (96 of them)
    (every(900), 600, Grid(900, 0, 900, adapted=True)),
    # 15-minute buckets under a 20-minute period: 30 minutes is the first multiple dividing a day
    (every(900), 1200, Grid(1800, 0, 900, adapted=True)),
    # minute labels at :30 s under 60 s periods: same width, cut half a minute later
    (every(60, T0 + 30), 60, Grid(60, 30, 60, adapted=True)),
])
def test_the_grid_follows_the_measured_bucket(labels: list[int], period: int,
                                              want: Grid) -> None:
    meter = BucketMeter()
    meter.observe(labels)
    assert meter.grid(period) == want


def test_a_few_sparse_labels_are_not_believed() -> None:
    meter = BucketMeter()
    meter.observe([T0 + 7 * 60, T0 + 10 * 60, T0 + 16 * 60])  # gcd 180 s: sparse minutes?
    assert meter.bucket is None and meter.grid(3600) == Grid(3600)
    meter.observe(every(60, T0 + 20 * 60, 5))
    assert meter.bucket == 60


def test_a_label_far_before_its_window_proves_a_coarse_bucket() -> None:
    meter = BucketMeter()
    # Two daily labels, and the last day's window began 13 h into the first bucket: the true
    # bucket divides 86400 and exceeds 46800 s (more than half a day), so it is the day.
    meter.answered(UTC8 + 13 * H, UTC8 + 13 * H + DAY - 1, (UTC8, UTC8 + DAY))
    assert meter.bucket == DAY
    eight = BucketMeter()  # 8 h in: a 12 h bucket would fit too
    eight.answered(UTC8 + 8 * H, UTC8 + 8 * H + DAY - 1, (UTC8, UTC8 + DAY))
    assert eight.bucket is None
    few = BucketMeter()
    few.answered(T0 + 30, T0 + 89, (T0, T0 + 60))  # 30 s before: the bucket could be 60 or 120
    few.observe([T0 + 240])
    assert few.bucket is None  # gcd 60, floor 30: not more than half


def test_the_bucket_is_the_gcd_of_label_distances_and_only_shrinks() -> None:
    meter = BucketMeter()
    meter.observe(every(7200))
    assert meter.bucket == 7200  # labels two hours apart: all we know
    meter.observe([T0 + 3 * H])
    assert meter.bucket == H
    meter.observe([T0 + H + 120])
    assert meter.bucket == 120  # gcd(3600, 3720) = 120


def test_a_bucket_dividing_no_day_is_refused_once_believed() -> None:
    meter = BucketMeter()
    meter.observe([T0, T0 + 420])  # 7 minutes: 86400 / 420 is not whole
    assert meter.grid(60) == Grid(60)  # two labels may be sparse minutes: not believed yet
    meter.observe(T0 + 420 * i for i in range(2, CONFIDENT))
    grid = meter.grid(60)
    assert isinstance(grid, Refusal)
    assert "buckets of 420 s" in grid.reason


def test_labels_that_cannot_be_bucket_starts_are_ignored(
        caplog: pytest.LogCaptureFixture) -> None:
    meter = BucketMeter()
    with caplog.at_level(logging.WARNING):
        # Milliseconds, and a label after the window: neither measures anything.
        kept = meter.answered(T0, T0 + 59, (T0 * 1000, T0 + 3600, T0 - 60, T0))
    assert kept == (T0 - 60, T0)
    assert meter.bucket == 60
    assert "not in Unix seconds" in caplog.text


def test_grid_boundaries() -> None:
    grid = Grid(DAY, 16 * H, DAY, adapted=True)
    assert grid.on_boundary(UTC8) and not grid.on_boundary(T0)
    assert grid.first_boundary(T0) == T0 + 16 * H
    assert grid.first_boundary(UTC8) == UTC8
    assert Grid(60).first_boundary(T0 + 7) == T0 + 7  # not measured: counting begins at once
    assert Grid(3600, 0, 60).first_boundary(T0 + 7) == T0 + 60  # minute buckets: the minute


def test_holds_an_answer_with_labels_outside_its_window_until_the_bucket_is_known() -> None:
    observer = Observer()
    meter = BucketMeter(observer)
    # Labels inside the window: fine whatever is known.
    assert not meter.hold(T0, T0 + 59, (T0,), Grid(60))
    # A label before the window while nothing is measured: the totals may hold usage before it.
    assert meter.hold(T0 + 60, T0 + 119, (T0,), Grid(60))
    # Measured, and the window starts on a bucket: trusted.
    hourly = Grid(H, 0, H, adapted=True)
    assert not meter.hold(T0 + H, T0 + H + 59, (T0 + H,), hourly)
    # Measured, but the window (planned before the grid changed) starts inside a bucket.
    assert meter.hold(T0 + 60, T0 + 119, (T0,), hourly)
    assert meter.hold(T0 + 30, T0 + 59, (T0,), Grid(H, 0, 60))
    assert observer.holds == meter.held_answers == 3


def test_an_additivity_error_is_counted_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    observer = Observer()
    meter = BucketMeter(observer)
    meter.observe(every(H))
    with caplog.at_level(logging.WARNING):
        meter.additivity_error("p/k/m", Totals(tokens=40))
        meter.additivity_error("p/k/m", Totals(tokens=2))
    assert observer.errors == [40, 2] and meter.additivity_errors == 2
    said = [r.getMessage() for r in caplog.records if "fewer than the sum" in r.getMessage()]
    assert len(said) == 1
    assert "40 tokens" in said[0] and "3600 s buckets" in said[0]


def test_the_probe_is_tried_a_few_times_then_counting_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    meter = BucketMeter()
    meter.probe_done(answered=False)
    meter.probe_done(answered=False)
    assert meter.needs_probe
    with caplog.at_level(logging.WARNING):
        meter.probe_done(answered=False)  # three cycles without an answer: go on without it
    assert not meter.needs_probe
    assert "counting begins without measuring" in caplog.text
    answered = BucketMeter()
    answered.probe_done(answered=True)
    assert not answered.needs_probe


def test_measurement_survives_a_restart_and_bad_saved_values_are_refused() -> None:
    meter = BucketMeter()
    meter.observe(every(DAY, UTC8))
    again = BucketMeter()
    again.restore(meter.to_dict())
    assert again.bucket == DAY and not again.needs_probe
    assert again.grid(3600) == Grid(DAY, 16 * H, DAY, adapted=True)
    bad: object
    for bad in ({"anchor": "x"}, {"anchor": 1, "step": -5}, {"anchor": 1, "step": True}, []):
        with pytest.raises((TypeError, ValueError)):
            BucketMeter().restore(bad)


def test_a_grid_change_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    meter = BucketMeter()
    meter.observe(every(H))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            meter.grid(60)
    said = [r.getMessage() for r in caplog.records if "buckets of 3600 s" in r.getMessage()]
    assert len(said) == 1
    assert "3600 s periods" in said[0]


# -- through the poller -----------------------------------------------------------------------

class Hourly:
    """An API of hourly buckets rounding windows outward, with one token a second since T0 - 2
    days; every answer lists its labels. Notes each call's window."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[int, int]] = []

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.calls.append((start, end))
        first, last = start - start % H, end - end % H + H - 1
        last = min(last, int(self.clock.time()))
        labels = tuple(range(first, last + 1, H))
        return Reading(Totals(tokens=last - first + 1), labels)


TARGET = Target("k", "m", "p")


def hourly_poller(api: Hourly, meter: BucketMeter, ledgers: dict[str, Ledger]) -> Poller:
    config = Config(api=ApiConfig(timeout=10.0, rate_limit=0),
                    poll=PollConfig(interval=60, settle=60, period=60), windows=(),
                    targets=(TARGET,))
    return Poller(config, api, api.clock, WorkerPool(1), ledgers, ApiClock.trusting(api.clock),
                  buckets=meter)


def test_the_probe_measures_before_counting_begins_at_the_next_bucket() -> None:
    clock = FakeClock(T0 + 600.0)  # ten minutes into an hour
    api = Hourly(clock)
    meter = BucketMeter()
    poller = hourly_poller(api, meter, {})
    poller.cycle()
    # First the last day (its labels: 25 hours), then counting: not yet, it begins at T0 + H.
    assert api.calls[0] == (T0 + 600 - DAY + 1, T0 + 600)
    assert meter.bucket == H and not meter.needs_probe
    ledger = poller.ledgers()[TARGET.ident]
    assert (ledger.origin, ledger.period) == (T0 + H, H)
    clock.advance(H)  # T0 + H + 600: the first bucket is being counted, whole
    snapshot = poller.cycle()
    assert snapshot.targets[0].counters.tokens == 601  # [T0 + H, T0 + H + 600]
    assert snapshot.targets[0].given_up == ()


def test_answers_outside_their_window_are_held_then_the_partial_bucket_given_up() -> None:
    clock = FakeClock(T0 + 600.0)
    api = Hourly(clock)
    meter = BucketMeter()
    meter.probe_done(answered=True)  # the probe found nothing: the bucket is not known
    poller = hourly_poller(api, meter, {TARGET.ident: Ledger(T0 + 300, 60, 60, audit=True)})
    for _ in range(3):  # [T0 + 300, ...] answers carry the label T0: held, never counted
        snapshot = poller.cycle()
        assert snapshot.targets[0].counters == Totals()
        assert not snapshot.targets[0].up
        assert dict(snapshot.targets[0].failures)["window_semantics"] >= 1
        clock.advance(60)
    assert meter.held_answers >= 3
    # The stretch counting began in (off the grid, inside the bucket of T0) is given up once
    # settled; the others wait: being held is not being rejected, no strikes.
    assert dict(snapshot.targets[0].given_up) == {"window_semantics": 60}
    meter.observe(every(H, T0 - 8 * H))  # a day's labels: hourly
    clock.advance(H)
    calls = len(api.calls)
    snapshot = poller.cycle()
    # The rest of the bucket counting began in is given up unread; the next hour is counted.
    assert (T0 + 300, T0 + H - 1) not in api.calls[calls:]
    assert dict(snapshot.targets[0].given_up) == {"window_semantics": H - 300}
    assert snapshot.targets[0].counters.tokens == int(clock.time()) - (T0 + H) + 1
