"""The reads of a budget seed (polling.seedreads), against an in-memory API: which days are
read, with what deadline, and when a seed is given up instead, said once per reason."""

from __future__ import annotations

import logging

import pytest

from exporter.accounting.ledger import Ledger
from exporter.api.buckets import BucketMeter
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.config import ApiConfig, Config, PollConfig, Target
from exporter.core.clock import FakeClock
from exporter.core.grid import DAY, Grid
from exporter.core.usage import Reading, Totals
from exporter.polling.seeding import Seeding
from exporter.polling.seedreads import STRADDLED, SeedReader
from tests.doubles import UsageDouble

NOV_1 = 1_793_491_200  # 2026-11-01T00:00:00Z
ORIGIN = NOV_1 + 3 * DAY  # counting began at midnight UTC on 4 November
NOW = ORIGIN + 3600  # the API's time: three whole days before the origin have settled
SETTLE = 600
A = Target("uminferapikey-a", "m")
B = Target("uminferapikey-b", "m")
PERMANENT = ApiError("retcode", "RetCode 171 (denied)", retcode=171, transient=False)
BUSY = ApiError("retcode", "RetCode 150 (busy)", retcode=150, transient=True)
WARNING = ("budget seeding given up for {} (and any other target for the same reason): {}; "
           "its budgets count its usage from when counting began")


class DayApi(UsageDouble):
    """Seven tokens a day, labelled at each day's start (or ``label_shift`` off it); a read
    starting at a day in ``failing`` raises that error; each call takes ``seconds`` on the
    clock."""

    def __init__(self, clock: FakeClock, seconds: float = 0.0) -> None:
        self.clock, self.seconds = clock, seconds
        self.calls: list[tuple[str, int, int, float]] = []
        self.failing: dict[int, ApiError] = {}
        self.label_shift = 0

    def get_usage(self, target: Target, start: int, end: int, deadline: float) -> Reading:
        self.calls.append((target.key, start, end, deadline))
        self.clock.advance(self.seconds)
        if start in self.failing:
            raise self.failing[start]
        return Reading(Totals(tokens=7), (start + self.label_shift,))


class Reader:
    """A SeedReader over a DayApi, its seeding due for A and B from NOV_1."""

    def __init__(self, seconds: float = 0.0, *, settled: bool = True, now: int = NOW) -> None:
        self.clock = FakeClock(now)
        self.api = DayApi(self.clock, seconds)
        self.buckets = BucketMeter()
        self.seeding = Seeding(horizon=lambda _target, _now: NOV_1)
        self.seeding.begin(A.ident)
        self.seeding.begin(B.ident)
        api_clock = ApiClock.trusting(self.clock) if settled else ApiClock(self.clock)
        config = Config(api=ApiConfig(timeout=10, rate_limit=0),
                        poll=PollConfig(interval=60, settle=SETTLE, test_period=3600),
                        windows=(), targets=(A, B))
        self.reader = SeedReader(config, self.api, self.clock, api_clock, self.buckets,
                                 lambda deadline: deadline + 0.5)  # the poller's _for_call

    def read(self, target: Target = A, ledger: Ledger | None = None,
             deadline: float | None = None) -> None:
        if ledger is None:
            ledger = counted(Grid.every(DAY))
        self.reader.read(target, ledger, self.seeding,
                         self.clock.monotonic() + 100 if deadline is None else deadline)

    def days(self) -> list[tuple[int, int]]:
        return [(start, end) for _, start, end, _ in self.api.calls]


def counted(grid: Grid) -> Ledger:
    """A ledger counting from ORIGIN (not fresh: its baseline is known)."""
    return Ledger(ORIGIN, grid, SETTLE, audit=True)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "exporter.polling.seedreads" and r.levelno == logging.WARNING]


def test_the_settled_days_before_the_origin_are_read_each_once_with_the_calls_deadline() -> None:
    reader = Reader()
    deadline = reader.clock.monotonic() + 30
    reader.read(deadline=deadline)
    assert reader.days() == [(NOV_1 + i * DAY, NOV_1 + (i + 1) * DAY - 1) for i in range(3)]
    assert {d for *_, d in reader.api.calls} == {deadline + 0.5}
    (seed,) = reader.seeding.take_done()
    assert (seed.target, seed.origin) == (A, ORIGIN)
    assert seed.days == (*((NOV_1 + i * DAY, Totals(tokens=7)) for i in range(3)),
                         (ORIGIN, Totals()))  # the baseline: not fresh, so zero
    reader.read()
    assert len(reader.api.calls) == 3  # done: never read again


def test_the_last_day_is_read_only_once_it_has_settled() -> None:
    reader = Reader(now=ORIGIN + SETTLE - 1)  # the day before the origin settles in a second
    reader.read()
    assert reader.days() == [(NOV_1, NOV_1 + DAY - 1), (NOV_1 + DAY, NOV_1 + 2 * DAY - 1)]
    reader.clock.advance(1.0)
    reader.read()
    assert reader.days()[2:] == [(NOV_1 + 2 * DAY, ORIGIN - 1)]


@pytest.mark.parametrize("why", ["no ledger", "fresh", "time not settled"])
def test_nothing_is_read_before_the_baseline_and_a_settled_clock(why: str) -> None:
    reader = Reader(settled=why != "time not settled")
    fresh = Ledger(ORIGIN, Grid.every(DAY), SETTLE, audit=True, fresh=True)
    ledger = {"no ledger": None, "fresh": fresh}.get(why, counted(Grid.every(DAY)))
    reader.reader.read(A, ledger, reader.seeding, reader.clock.monotonic() + 100)
    assert reader.api.calls == []
    assert reader.seeding.pending() == [A.ident, B.ident]  # still due, not given up


def test_reads_stop_when_the_budget_runs_out_and_go_on_next_poll() -> None:
    reader = Reader(seconds=10.0)
    began = reader.clock.monotonic()
    reader.read(deadline=began + 10.0)  # the first call ends exactly at the deadline
    assert reader.days() == [(NOV_1, NOV_1 + DAY - 1)]
    reader.read(deadline=reader.clock.monotonic())  # out of budget before any call
    assert len(reader.api.calls) == 1
    reader.read()
    assert reader.days()[1:] == [(NOV_1 + DAY, NOV_1 + 2 * DAY - 1),
                                 (NOV_1 + 2 * DAY, ORIGIN - 1)]
    assert len(reader.seeding.take_done()) == 1


def test_a_transient_failure_ends_this_polls_reads_and_they_are_tried_again() -> None:
    reader = Reader()
    reader.api.failing[NOV_1 + DAY] = BUSY
    reader.read()
    assert [start for start, _ in reader.days()] == [NOV_1, NOV_1 + DAY]  # not the third
    assert reader.seeding.pending() == [A.ident, B.ident]
    del reader.api.failing[NOV_1 + DAY]
    reader.read()
    assert [start for start, _ in reader.days()][2:] == [NOV_1 + DAY, NOV_1 + 2 * DAY]
    assert len(reader.seeding.take_done()) == 1


def test_a_permanent_failure_gives_the_seed_up_said_once_per_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader()
    reader.api.failing[NOV_1] = PERMANENT
    reader.read(A)
    reader.read(B)  # the same reason: given up, not said again
    assert reader.days() == [(NOV_1, NOV_1 + DAY - 1)] * 2
    assert reader.seeding.pending() == [] and reader.seeding.take_done() == []
    assert warnings(caplog) == [WARNING.format(A.ident, "RetCode 171 (denied)")]
    reader.read(A)
    assert len(reader.api.calls) == 2  # given up: never read again


def test_each_reason_a_seed_is_given_up_for_is_said(caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader()
    reader.api.failing[NOV_1] = PERMANENT
    reader.read(A)
    del reader.api.failing[NOV_1]
    reader.api.label_shift = -1
    reader.read(B)
    assert warnings(caplog) == [WARNING.format(A.ident, "RetCode 171 (denied)"),
                                WARNING.format(B.ident, STRADDLED)]


def test_an_answer_labelled_before_its_day_gives_the_seed_up(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader()
    reader.api.label_shift = -1
    reader.read()
    assert len(reader.api.calls) == 1  # the first answer shows it: no more reads
    assert reader.seeding.pending() == [B.ident] and reader.seeding.take_done() == []
    assert warnings(caplog) == [WARNING.format(A.ident, STRADDLED)]


def test_day_buckets_off_utc_midnight_give_the_seed_up_without_a_read(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader()
    eight_hours = Grid.every(DAY, 16 * 3600)  # days beginning at 16:00 UTC
    reader.buckets.answered(eight_hours, NOV_1 - 8 * 3600, NOV_1 + DAY + 16 * 3600 - 1,
                            (NOV_1 - 8 * 3600, NOV_1 + 16 * 3600))  # buckets of a day
    assert reader.buckets.width == DAY
    reader.read(ledger=counted(eight_hours))
    assert reader.api.calls == []
    assert reader.seeding.pending() == [B.ident]
    assert warnings(caplog) == [WARNING.format(A.ident, STRADDLED)]
    reader.read(B)  # UTC days on a UTC grid: read as usual
    assert len(reader.api.calls) == 3


def test_day_buckets_on_utc_midnight_are_read() -> None:
    reader = Reader()
    utc = Grid.every(DAY)
    reader.buckets.answered(utc, NOV_1 - DAY, NOV_1 + DAY - 1, (NOV_1 - DAY, NOV_1))
    assert reader.buckets.width == DAY
    reader.read(ledger=counted(utc))
    assert len(reader.api.calls) == 3 and len(reader.seeding.take_done()) == 1
