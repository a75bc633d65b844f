"""A target's window gauges (polling.windowreads) against an in-memory API: the widest window
read in day slices, narrower ones summed from its rows or read alone, when they are read, and
what a failure leaves."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.config import ApiConfig, Config, PollConfig, Target, Window
from exporter.core.clock import FakeClock
from exporter.core.grid import DAY, Grid
from exporter.core.usage import Reading, Totals
from exporter.polling.status import PollStatus
from exporter.polling.windowreads import WindowGauges, WindowReader
from tests.doubles import UsageDouble

START = 1_793_491_200  # a UTC midnight
NOW = START + 3599  # the last second of an hour
A = Target("uminferapikey-a", "m")
HOUR, HALF, TWO_DAYS = Window("1h", 3600), Window("30m", 1800), Window("2d", 2 * DAY)
GRID = Grid.every(DAY)
TIMEOUT = ApiError("timeout", "no answer within 10.0s", transient=True)


class MinuteApi(UsageDouble):
    """A token at each minute's first second, reported in buckets of ``bucket`` seconds; each
    call may raise the error ``failing`` holds."""

    def __init__(self, bucket: int = 3600) -> None:
        self.bucket = bucket
        self.calls: list[tuple[int, int, float]] = []
        self.asked: list[Target] = []  # the target of each call
        self.failing: BaseException | None = None
        self.used: set[int] | None = None  # the minutes with usage (None: every one)

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.calls.append((start, end, deadline))
        self.asked.append(target)
        if self.failing is not None:
            raise self.failing
        rows: Counter[int] = Counter()
        for minute in range(start + (-start) % 60, end + 1, 60):
            if self.used is None or minute in self.used:
                rows[minute - minute % self.bucket] += 1
        labels = tuple(sorted(rows))
        return Reading(Totals(tokens=rows.total()), labels,
                       tuple(Totals(tokens=rows[label]) for label in labels))


class Reader:
    """A WindowReader of ``windows`` over a MinuteApi, on a fake clock at NOW."""

    def __init__(self, *windows: Window, bucket: int = 3600, now: float = NOW) -> None:
        self.clock = FakeClock(now)
        self.api = MinuteApi(bucket)
        self.failures: Counter[str] = Counter()
        self.gauges = WindowGauges()
        self.status = PollStatus()
        config = Config(api=ApiConfig(timeout=10, rate_limit=0),
                        poll=PollConfig(interval=60, settle=600, test_period=3600,
                                        window_interval=120),
                        windows=windows, targets=(A,))
        self.reader = WindowReader(config, self.api, self.clock, ApiClock.trusting(self.clock),
                                   BucketMeter(), lambda: self.status,
                                   lambda deadline: deadline + 0.5)  # the poller's _for_call

    def poll(self, deadline: float | None = None) -> None:
        self.reader.poll(A, GRID, self.gauges, self.failures,
                         self.clock.monotonic() + 30 if deadline is None else deadline)

    def tokens(self) -> tuple[tuple[str, int], ...]:
        return tuple((window.name, totals.tokens) for window, totals in self.gauges.values)


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name in ("exporter.polling.windowreads", "exporter.polling.poller")]


def test_the_widest_window_is_read_in_day_slices_and_the_others_summed_or_read_alone(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    reader = Reader(HOUR, HALF, TWO_DAYS)  # the widest is not first
    deadline = reader.clock.monotonic() + 30
    reader.poll(deadline)
    assert reader.api.calls == [(NOW - 2 * DAY + 1, NOW - DAY, deadline + 0.5),
                                (NOW - DAY + 1, NOW, deadline + 0.5),
                                (NOW - 1799, NOW, deadline + 0.5)]  # 30 min: half a bucket
    assert reader.api.asked == [A, A, A]
    assert reader.tokens() == (("1h", 60), ("30m", 30), ("2d", 2880))  # in the config's order
    assert (reader.gauges.at, reader.gauges.problem, reader.failures) == (NOW, None, {})
    assert said(caplog) == [("INFO", "window 30m is read with a call of its own, not summed "
                             "from the widest window's answer: the API's buckets (hourly, "
                             "daily?) may straddle the window's start")]


def test_the_gauges_are_read_again_once_the_window_interval_has_passed() -> None:
    reader = Reader(HOUR)
    began = reader.clock.monotonic()
    reader.poll()
    assert reader.gauges.next_read == began + 120
    reader.clock.advance(119.0)
    reader.poll()
    assert len(reader.api.calls) == 1 and reader.gauges.at == NOW  # not due yet
    reader.clock.advance(1.0)
    reader.poll()
    assert len(reader.api.calls) == 2 and reader.gauges.at == NOW + 120


def test_without_windows_or_budget_nothing_is_read() -> None:
    reader = Reader()
    reader.poll()
    assert reader.api.calls == [] and reader.gauges == WindowGauges()
    reader = Reader(HOUR)
    reader.poll(deadline=reader.clock.monotonic())  # the cycle's budget ends now
    assert reader.api.calls == [] and reader.gauges == WindowGauges()
    reader.poll()
    assert reader.tokens() == (("1h", 60),)


def test_the_windows_end_where_the_apis_buckets_end_once_their_width_is_known() -> None:
    reader = Reader(HOUR, bucket=60, now=NOW + 30)  # half a minute into the next hour
    reader.poll()
    assert reader.gauges.at == NOW + 30  # the width is not known before the first answer
    reader.clock.advance(120.0)
    reader.poll()
    assert reader.gauges.at == NOW + 120  # minutes: the last second of the last whole one
    assert reader.api.calls[-1][:2] == (NOW + 121 - 3600, NOW + 120)


def test_a_sparse_answer_is_summed_by_the_bucket_width_its_earlier_answers_showed() -> None:
    reader = Reader(HOUR, HALF, bucket=60)
    reader.poll()  # minute rows: the width is measured, and 30 minutes are a sum of rows
    assert len(reader.api.calls) == 1 and reader.tokens() == (("1h", 60), ("30m", 30))
    reader.clock.advance(120.0)
    reader.api.used = {START + 120}  # one row, at the hour window's first minute
    reader.poll()
    assert len(reader.api.calls) == 2  # the 30 minutes lie on minute lines: no read alone
    assert reader.tokens() == (("1h", 1), ("30m", 0))


def test_a_failed_read_keeps_the_last_gauges_counts_each_failure_and_says_each_change_once(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader(HOUR)
    reader.poll()
    reader.api.failing = TIMEOUT
    for _ in range(2):
        reader.clock.advance(120.0)
        reader.poll()
    assert reader.failures == {"timeout": 2}
    assert (reader.tokens(), reader.gauges.at) == ((("1h", 60),), NOW)  # the last ones
    assert reader.gauges.problem == "no answer within 10.0s"
    reader.clock.advance(1.0)
    reader.poll()  # a failure does not wait for the window interval
    assert len(reader.api.calls) == 4
    reader.api.failing = ApiError("network", "connection refused", transient=True)
    reader.poll()
    reader.api.failing = None
    reader.poll()
    assert reader.gauges.problem is None and reader.gauges.at == NOW + 241
    reader.api.failing = TIMEOUT
    reader.clock.advance(120.0)
    reader.poll()  # after a success, the same failure is news again
    assert reader.failures == {"timeout": 4, "network": 1}
    warning = "target /uminferapikey-a/m: window gauges not read: {}"
    assert said(caplog) == [("WARNING", warning.format("no answer within 10.0s")),
                            ("WARNING", warning.format("connection refused")),
                            ("WARNING", warning.format("no answer within 10.0s"))]


def test_an_internal_error_is_counted_each_time_and_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    failures: Counter[str] = Counter({"timeout": 1})
    bug = RuntimeError("bug")
    for _ in range(2):
        WindowReader.failed_internally(A, failures, bug)
    assert failures == {"timeout": 1, "internal": 2}
    assert [(r.levelname, r.getMessage(), r.exc_info and r.exc_info[1])
            for r in caplog.records] == [
        ("ERROR", "internal error reading windows of target /uminferapikey-a/m", bug)] * 2
