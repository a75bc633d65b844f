"""The API's clock from Date headers: a lower bound, robust to strays, deaf to wall-clock steps."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.api.clock import UNDATED, ApiClock
from exporter.core.clock import FakeClock

API = 1_700_000_000.0


class SteppingClock(FakeClock):
    """A fake clock whose wall time can step on its own, as NTP does."""

    def step(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


def test_unknown_until_an_answer_and_the_wall_clock_stands_in() -> None:
    clock = FakeClock(API + 900)  # the host is 15 min ahead
    api = ApiClock(clock)
    assert (api.known, api.offset()) == (False, None)
    assert api.now() == API + 900
    api.observe(date(API), clock.monotonic())
    assert api.known
    assert api.now() == API  # whole seconds: the Date's second is the lower bound
    assert api.offset() == pytest.approx(-899.5)  # centred for people


def test_an_answer_never_puts_the_api_ahead_of_itself() -> None:
    """Date is rounded down and stamped before the answer arrives: the estimate is a lower
    bound, so no period is closed before the API has reached its end."""
    clock = FakeClock(API)
    api = ApiClock(clock)
    clock.advance(0.7)  # the server stamped the answer at API + 0.7, "Date: ...:00"
    clock.advance(0.2)  # and it arrived 0.2 s later
    api.observe(date(API + 0.7), clock.monotonic())
    assert api.now() <= API + 0.9
    assert api.now() == pytest.approx(API)


def test_a_stray_server_with_a_wrong_clock_is_outvoted() -> None:
    clock = FakeClock(API)
    api = ApiClock(clock)
    for i in range(9):
        clock.advance(1)
        stray = 3600 if i % 3 == 0 else 0  # one answer in three from a server an hour ahead
        api.observe(date(API + i + 1 + stray), clock.monotonic())
    assert api.now() == pytest.approx(API + 9)


def test_a_wall_clock_step_changes_nothing() -> None:
    clock = SteppingClock(API)
    api = ApiClock(clock)
    api.observe(date(API), clock.monotonic())
    clock.advance(30)
    before = api.now()
    clock.step(-7200)  # NTP steps the host two hours back ...
    assert api.now() == before
    clock.step(+14400)  # ... then four forward
    assert api.now() == before
    assert api.offset() == pytest.approx(-7200 + 0.5)


@pytest.mark.parametrize("value", [None, "", "yesterday", "Thu, 31 Feb 2026 25:00:00 GMT",
                                   "x" * 10_000, "Mon, 01 Jan 99999 00:00:00 GMT"])
def test_unusable_dates_are_ignored(value: str | None) -> None:
    api = ApiClock(FakeClock(API))
    api.observe(value, 0.0)
    assert not api.known


@given(st.text(max_size=80))
def test_any_header_is_read_or_ignored_never_raised(value: str) -> None:
    ApiClock(FakeClock(API)).observe(value, 0.0)


def test_trusting_agrees_with_the_clock_from_the_start() -> None:
    clock = FakeClock(API)
    api = ApiClock.trusting(clock)
    clock.advance(42)
    assert (api.known, api.now()) == (True, API + 42)


def test_answers_without_a_date_fall_back_to_the_host_clock_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A proxy that strips Date must not keep new targets from ever being counted."""
    clock = FakeClock(API + 5)
    api = ApiClock(clock)
    for _ in range(UNDATED - 1):
        api.observe(None, clock.monotonic())
    assert not api.known
    for _ in range(3):
        api.observe(None, clock.monotonic())
    assert (api.known, api.now(), api.offset()) == (True, API + 5, None)
    assert len([r for r in caplog.records if "no usable Date" in r.getMessage()]) == 1
    api.observe(date(API), clock.monotonic())  # a dated answer after all: it is believed
    assert api.now() == API
    assert api.offset() == pytest.approx(-4.5)


def test_time_is_settled_only_once_three_answers_agree() -> None:
    # The start's plain GET answered by a gateway whose clock is two days ahead: one Date moves
    # the estimate, but nothing may close or be skipped by it until answers agree.
    clock = FakeClock(API)
    api = ApiClock(clock)
    api.observe(date(API + 2 * 86400), clock.monotonic())
    assert api.known and not api.settled
    api.observe(date(API), clock.monotonic())
    api.observe(date(API), clock.monotonic())
    assert not api.settled  # [stray, good, good]: the median is good, but only two agree yet
    api.observe(date(API), clock.monotonic())
    assert api.settled and api.now() == API


def test_agreeing_strays_that_are_outnumbered_never_settle_the_time() -> None:
    clock = FakeClock(API)
    api = ApiClock(clock)
    for offset in (7200, 7200, 0, 0):  # two strays and two good answers: no majority
        api.observe(date(API + offset), clock.monotonic())
    assert not api.settled
    api.observe(date(API), clock.monotonic())
    assert api.settled and api.now() == API


def test_without_dates_the_trusted_host_clock_is_settled() -> None:
    clock = FakeClock(API)
    api = ApiClock(clock)
    for _ in range(UNDATED):
        api.observe(None, clock.monotonic())
    assert api.settled
    assert ApiClock.trusting(clock).settled


def test_the_estimate_is_the_median_of_the_last_15_answers_only() -> None:
    # A server fleet whose clock was an hour ahead for 20 answers, then put right: once 15
    # right answers have come, the old ones no longer count, however many they were.
    clock = FakeClock(API)
    api = ApiClock(clock)
    for _ in range(20):
        clock.advance(1)
        api.observe(date(clock.time() + 3600), clock.monotonic())
    for _ in range(7):
        clock.advance(1)
        api.observe(date(clock.time()), clock.monotonic())
    assert api.now() == pytest.approx(clock.time() + 3600, abs=1)  # 8 of the last 15 wrong
    clock.advance(1)
    api.observe(date(clock.time()), clock.monotonic())
    assert api.now() == pytest.approx(clock.time(), abs=1)  # 8 of the last 15 right


def test_the_host_clock_is_trusted_at_the_third_undated_answer_not_before(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(API + 5)
    clock.advance(100)  # monotonic time is not wall time: 100 here
    api = ApiClock(clock)
    api.observe(None, clock.monotonic())
    api.observe(None, clock.monotonic())
    assert not api.known and not api.settled
    api.observe(None, clock.monotonic())  # the third (documented: "after 3 of them")
    assert api.known and api.settled
    assert api.now() == API + 105
    clock.advance(10)
    assert api.now() == API + 115
    assert [r.getMessage() for r in caplog.records] == [
        "the API's answers carry no usable Date header (a proxy may strip it): periods close "
        "by this host's clock; keep it in sync"]


def test_while_unknown_the_wall_clock_stands_in_whatever_the_monotonic_clock_reads() -> None:
    clock = FakeClock(API)
    clock.advance(250)
    api = ApiClock(clock)
    assert api.now() == API + 250
    trusting = ApiClock.trusting(clock)
    clock.advance(5)
    assert (api.now(), trusting.now()) == (API + 255, API + 255)


@pytest.mark.parametrize(("value", "read"), [
    ("Tue, 14 Nov 2023 22:13:20 -0000", True),  # parsed as naive: HTTP dates are UTC
    ("Tue, 14 Nov 2023 22:13:20 GMT".ljust(64), True),  # the longest value read
    ("Tue, 14 Nov 2023 22:13:20 GMT".ljust(65), False),
])
def test_dates_are_utc_and_values_past_64_characters_are_not_read(value: str,
                                                                   read: bool) -> None:
    clock = FakeClock(API + 900)
    api = ApiClock(clock)
    api.observe(value, clock.monotonic())
    assert api.known is read
    if read:
        assert api.now() == API  # 1_700_000_000 is 22:13:20 UTC that day


def test_samples_exactly_agree_seconds_from_their_median_agree() -> None:
    clock = FakeClock(API)
    api = ApiClock(clock)
    for offset in (0, 0, 5):  # AGREE is 5 s: the Date header's second and a round trip
        api.observe(date(API + offset), clock.monotonic())
    assert api.settled
    other = ApiClock(clock)
    for offset in (0, 0, 6):
        other.observe(date(API + offset), clock.monotonic())
    assert not other.settled


def test_a_date_without_a_zone_is_utc_on_a_host_in_another_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # "-0000" parses as a naive time, which Python would read in the host's zone.
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        clock = FakeClock(API + 900)
        api = ApiClock(clock)
        api.observe("Tue, 14 Nov 2023 22:13:20 -0000", clock.monotonic())
        assert api.now() == API
    finally:
        monkeypatch.undo()
        time.tzset()
