"""What the API's labels say about its buckets (information, never a gate), and the grid of
provider days that makes knowing them unnecessary.

Every expected value is computed by hand here (see the comments), not by the code under test.
"""

from __future__ import annotations

import datetime
import itertools
import logging

import pytest

from exporter.api.buckets import BucketMeter
from exporter.core.grid import DAY, LONGEST, Grid, GridError, check_zone
from exporter.core.usage import Totals

H = 3600
T0 = 1_700_006_400  # a UTC midnight (1_700_006_400 / 86400 = 19676.0)
UTC8 = T0 - 8 * H  # 16:00 UTC the day before: where a UTC+8 day starts
SHANGHAI = Grid("Asia/Shanghai")


class Observer:
    def __init__(self) -> None:
        self.errors: list[int] = []
        self.off = 0

    def additivity_error(self, excess_tokens: int) -> None:
        self.errors.append(excess_tokens)

    def off_grid(self) -> None:
        self.off += 1


def test_the_default_grid_is_this_clouds_days_from_16_utc() -> None:
    assert Grid() == SHANGHAI
    assert (SHANGHAI.start(T0), SHANGHAI.end(T0)) == (UTC8, UTC8 + DAY - 1)
    assert SHANGHAI.start(UTC8) == UTC8 and SHANGHAI.on_line(UTC8)
    assert not SHANGHAI.on_line(T0)
    # Every hour and minute line is a line of no day, but every day line is an hour line.
    assert all(SHANGHAI.start(t) % H == 0 for t in range(T0 - 3 * DAY, T0 + 3 * DAY, 977))


@pytest.mark.parametrize(("day", "hours"), [(3, 24), (5, 25), (6, 24)])
def test_a_zone_with_daylight_saving_has_days_of_23_24_and_25_hours(day: int, hours: int) -> None:
    # America/New_York left daylight saving on 2023-11-05 (a 25-hour day) and entered it on
    # 2024-03-10 (23 hours); its midnights are 04:00 UTC in summer, 05:00 UTC in winter.
    zone = Grid("America/New_York")
    noon = int(datetime.datetime(2023, 11, day, 17, tzinfo=datetime.UTC).timestamp())
    start = zone.start(noon)
    assert datetime.datetime.fromtimestamp(start, datetime.UTC).hour in (4, 5)
    assert zone.end(noon) - start + 1 == hours * H
    spring = int(datetime.datetime(2024, 3, 10, 17, tzinfo=datetime.UTC).timestamp())
    assert zone.end(spring) - zone.start(spring) + 1 == 23 * H
    assert 25 * H < LONGEST


def test_a_fixed_grid_and_its_forms() -> None:
    grid = Grid.every(H, 600)
    assert (grid.start(T0), grid.end(T0)) == (T0 - H + 600, T0 + 599)
    assert Grid.from_dict(grid.to_dict()) == grid
    assert Grid.from_dict(SHANGHAI.to_dict()) == SHANGHAI
    for bad in ({"zone": "Nowhere/Else"}, {"period": 7 * H}, {"period": H, "offset": H}):
        with pytest.raises(GridError):
            Grid.from_dict(bad)
    with pytest.raises(TypeError):
        Grid.from_dict({"period": "1h"})
    assert check_zone("UTC") is None
    assert check_zone("Mars/Olympus") == ("unknown time zone 'Mars/Olympus' (an IANA name such "
                                          "as Asia/Shanghai or UTC)")


def test_nothing_seen_is_no_width() -> None:
    meter = BucketMeter()
    assert meter.width is None
    meter.answered(SHANGHAI, UTC8, UTC8 + 100, ())
    meter.answered(SHANGHAI, UTC8, UTC8 + 100, (UTC8 + 60,))  # one label: no spacing
    assert meter.width is None


@pytest.mark.parametrize(("labels", "width"), [
    ([T0, T0 + 60, T0 + 180], 60),
    ([T0, T0 + H, T0 + 3 * H], H),
    ([T0 + 7, T0 + 8, T0 + 10], 1),  # labels by the second
    ([T0, T0 + 7 * 60], None),  # 420 s divides no day: no fixed width fits
])
def test_the_width_fits_the_labels_spacing(labels: list[int], width: int | None) -> None:
    meter = BucketMeter()
    meter.answered(Grid.every(60), labels[0], labels[-1], labels)
    assert meter.width == width


def test_labels_on_every_midnight_are_a_provider_day_whatever_its_length() -> None:
    zone = Grid("America/New_York")
    nov = int(datetime.datetime(2023, 11, 1, 12, tzinfo=datetime.UTC).timestamp())
    midnights = [zone.start(nov + d * DAY) for d in range(8)]  # across the 25-hour day
    meter = BucketMeter()
    for a, b in itertools.pairwise(midnights):
        meter.answered(zone, a, zone.end(b), (a, b))
    assert meter.width == DAY  # not the 1 h a gcd of 23, 24 and 25 h would give


def test_the_width_follows_a_change_and_says_it_once_each(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    meter = BucketMeter()
    grid = Grid.every(60)
    with caplog.at_level(logging.INFO, logger="exporter.api.buckets"):
        for i in range(3):
            meter.answered(grid, T0 + i * H, T0 + i * H + 600, (T0 + i * H, T0 + i * H + 60))
        assert meter.width == 60
        for i in range(8):  # the API moves to hourly buckets: its minute labels age out
            meter.answered(grid, T0, T0 + DAY - 1, (T0 + i * H, T0 + (i + 1) * H))
        assert meter.width == H
    said = [r.getMessage() for r in caplog.records]
    assert said == ["the API reports usage in buckets of 60 s (from its recent labels; counting "
                    "does not depend on it)",
                    "the API reports usage in buckets of 3600 s (from its recent labels; counting "
                    "does not depend on it)"]


def test_a_label_before_a_midnight_window_is_said_once_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    # Daily buckets at UTC midnight while api.time_zone is UTC+8: the read of [16:00, now]
    # comes back labelled 00:00 UTC, a bucket straddling the provider's midnight.
    observer = Observer()
    meter = BucketMeter(observer)
    with caplog.at_level(logging.WARNING, logger="exporter.api.buckets"):
        for _ in range(3):
            meter.answered(SHANGHAI, T0 + 16 * H, T0 + 20 * H, (T0,))
        meter.answered(SHANGHAI, T0 + 17 * H, T0 + 20 * H, (T0,))  # no midnight: no contradiction
    assert observer.off == 3 and meter.off_grid == 3
    [said] = [r.getMessage() for r in caplog.records]
    assert "set api.time_zone to the zone the cloud cuts its days in" in said
    assert "days of Asia/Shanghai" in said


def test_labels_that_cannot_be_bucket_starts_are_ignored(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    meter = BucketMeter()
    with caplog.at_level(logging.WARNING, logger="exporter.api.buckets"):
        meter.answered(SHANGHAI, T0, T0 + 600, (T0 * 1000, T0 * 1000 + 60_000))  # milliseconds
        meter.answered(SHANGHAI, T0, T0 + 600, (T0 - 2 * DAY,))
    assert meter.width is None and meter.off_grid == 0
    assert len(caplog.records) == 1 and "not in Unix seconds?" in caplog.records[0].getMessage()


def test_an_additivity_error_is_counted_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    observer = Observer()
    meter = BucketMeter(observer)
    with caplog.at_level(logging.WARNING, logger="exporter.api.buckets"):
        meter.additivity_error("p/k/m", Totals(tokens=8))
        meter.additivity_error("p/k/m", Totals(tokens=2))
    assert observer.errors == [8, 2]
    assert len(caplog.records) == 1
    assert "returned 8 tokens fewer than the sum" in caplog.records[0].getMessage()


def test_two_single_labels_on_midnights_are_already_a_provider_day() -> None:
    meter = BucketMeter()
    meter.answered(SHANGHAI, UTC8, UTC8 + 600, (UTC8,))  # reads within a day: one label each
    assert meter.width is None
    meter.answered(SHANGHAI, UTC8 + DAY, UTC8 + DAY + 600, (UTC8 + DAY,))
    assert meter.width == DAY


def test_a_move_to_daily_buckets_is_followed_once_the_minute_labels_age_out() -> None:
    zone = Grid("America/New_York")
    nov = int(datetime.datetime(2023, 11, 1, 12, tzinfo=datetime.UTC).timestamp())
    meter = BucketMeter()
    meter.answered(zone, nov, nov + 600, (nov + 60, nov + 120))
    assert meter.width == 60
    midnights = [zone.start(nov + d * DAY) for d in range(1, 10)]  # across the 25-hour day
    for a, b in itertools.pairwise(midnights):  # two-day audits, labelled at each midnight
        meter.answered(zone, a, zone.end(b), (a, b))
    assert meter.width == DAY  # not the 1 h a gcd of 24 and 25 h gives


def test_sparse_minute_labels_on_midnights_are_not_taken_for_days() -> None:
    # Minute buckets whose only usage falls in the first minute of each provider day: the
    # spacing measured says minutes, the labels on the lines say nothing new.
    meter = BucketMeter()
    meter.answered(SHANGHAI, UTC8 - 600, UTC8 + 120, (UTC8 - 60, UTC8))
    for day in range(1, 9):
        meter.answered(SHANGHAI, UTC8 + day * DAY, UTC8 + day * DAY + 600, (UTC8 + day * DAY,))
    assert meter.width == 60


def test_answers_with_one_label_keep_the_spacing_measured_before() -> None:
    meter = BucketMeter()
    grid = Grid.every(60)
    meter.answered(grid, T0, T0 + 600, (T0, T0 + 60))
    for i in range(1, 10):
        meter.answered(grid, T0 + i * H, T0 + i * H + 600, (T0 + i * H + 120,))
    assert meter.width == 60


def test_a_spacing_that_divides_no_day_is_said_as_no_width(caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    meter = BucketMeter()
    grid = Grid.every(60)
    meter.answered(grid, T0, T0 + 600, (T0, T0 + 60))
    with caplog.at_level(logging.INFO, logger="exporter.api.buckets"):
        for i in range(8):  # 7-minute labels push the minute ones out
            meter.answered(grid, T0 + i * H, T0 + i * H + 900, (T0 + i * H, T0 + i * H + 420))
    assert meter.width is None
    assert caplog.messages == [
        "the API's buckets changed: no fixed width fits its recent labels"]


def test_each_warning_is_said_once_in_its_own_words(caplog: pytest.LogCaptureFixture) -> None:
    meter = BucketMeter(Observer())
    with caplog.at_level(logging.WARNING, logger="exporter.api.buckets"):
        for _ in range(2):
            meter.answered(SHANGHAI, T0 + 16 * H, T0 + 20 * H, (T0,))
            meter.additivity_error("p/k/m", Totals(tokens=8))
            meter.answered(SHANGHAI, T0, T0 + 600, (T0 * 1000,))
    assert caplog.messages == [
        f"an answer for a range starting at {T0 + 16 * H}, a midnight of days of Asia/Shanghai, "
        f"labels usage at {T0}: the API's buckets straddle that midnight, so its days start in "
        "another time zone; set api.time_zone to the zone the cloud cuts its days in (counting "
        "stays exact only where its totals are)",
        "target p/k/m: one read over settled periods returned 8 tokens fewer than the sum of "
        "their final readings; likely cause: windows rounded outward to buckets that straddle a "
        "midnight of api.time_zone, or usage lowered after it settled (counters may be too high "
        "by that much)",
        f"an answer for [{T0}, {T0 + 600}] labels usage {T0 * 1000}, which is no bucket start of "
        "that range (Usages[].Timestamp not in Unix seconds?): such labels are ignored"]


@pytest.mark.parametrize(("labels", "odd"), [
    ((T0 - DAY, T0), T0 - DAY),  # a day before the start: too early
    ((T0 - DAY + 1, T0 + 600, T0 + 601), T0 + 601),  # the range's last second is plausible
])
def test_the_first_implausible_label_is_the_one_said(caplog: pytest.LogCaptureFixture,
                                                     labels: tuple[int, ...], odd: int) -> None:
    meter = BucketMeter()
    with caplog.at_level(logging.WARNING, logger="exporter.api.buckets"):
        meter.answered(Grid.every(60), T0, T0 + 600, labels)
    [said] = [m for m in caplog.messages if "which is no bucket start" in m]
    assert f"labels usage {odd}, which" in said
