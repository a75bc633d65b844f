"""Time as a dependency: the fake clock every unit test leans on moves only when told to, and
the real one does what its protocol says."""

from __future__ import annotations

import time

import pytest

from exporter.core.clock import Clock, FakeClock, SystemClock


def test_the_fake_clock_starts_where_told_with_a_monotonic_zero() -> None:
    assert (FakeClock().time(), FakeClock().monotonic()) == (1_700_000_000.0, 0.0)
    assert (FakeClock(5.5).time(), FakeClock(5.5).monotonic()) == (5.5, 0.0)


def test_sleep_and_advance_move_both_clocks_by_exactly_the_seconds_asked() -> None:
    clock = FakeClock(100.0)
    clock.sleep(2.5)
    clock.advance(0.25)
    assert (clock.time(), clock.monotonic()) == (102.75, 2.75)


@pytest.mark.parametrize("seconds", [0.0, -3.0])
def test_sleeping_no_time_or_negative_time_moves_nothing(seconds: float) -> None:
    clock = FakeClock(100.0)
    clock.sleep(seconds)
    assert (clock.time(), clock.monotonic()) == (100.0, 0.0)


def test_the_system_clock_reads_the_machines_clocks_and_sleeps_for_real() -> None:
    clock: Clock = SystemClock()
    assert abs(clock.time() - time.time()) < 5
    before = time.monotonic()
    assert abs(clock.monotonic() - before) < 5
    clock.sleep(0.02)
    clock.sleep(-1.0)  # a deadline already past: no wait, no error (time.sleep would raise)
    clock.sleep(0)
    assert time.monotonic() - before >= 0.02
