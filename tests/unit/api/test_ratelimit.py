"""The shared token bucket: pace, burst, deadlines and AIMD on throttling."""

from __future__ import annotations

import threading

import pytest

from exporter.api.ratelimit import DECREASE_COOLDOWN, RateLimiter
from exporter.core.clock import FakeClock, SystemClock

FAR = 1e9


def test_steady_rate_paces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=1, clock=clock)
    for _ in range(21):
        assert limiter.acquire(FAR)
    assert clock.monotonic() == pytest.approx(2.0)


def test_burst_is_free_then_paced() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=5, clock=clock)
    for _ in range(5):
        assert limiter.acquire(FAR)
    assert clock.monotonic() == 0
    assert limiter.acquire(FAR)
    assert clock.monotonic() == pytest.approx(1.0)


def test_idle_time_refills_only_up_to_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=3, clock=clock)
    clock.advance(100)
    for _ in range(3):
        limiter.acquire(FAR)
    assert clock.monotonic() == 100
    limiter.acquire(FAR)
    assert clock.monotonic() == pytest.approx(101)


def test_deadline_too_close_returns_false_and_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.acquire(FAR)
    assert not limiter.acquire(deadline=0.5)
    assert clock.monotonic() == 0  # it did not sleep in vain
    assert limiter.acquire(deadline=1.0)  # and the refused call booked no token
    assert clock.monotonic() == pytest.approx(1.0)


def test_deadline_already_passed_returns_false() -> None:
    clock = FakeClock()
    clock.advance(5)
    assert not RateLimiter(rate=0, burst=1, clock=clock).acquire(deadline=4)
    assert not RateLimiter(rate=1, burst=1, clock=clock).acquire(deadline=4)


def test_unlimited_never_waits_and_ignores_throttling() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0, burst=1, clock=clock)
    limiter.throttled()
    for _ in range(1000):
        assert limiter.acquire(FAR)
    assert clock.monotonic() == 0
    assert limiter.current_rate == 0


def test_throttled_halves_once_per_cooldown_down_to_floor() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=20, burst=1, clock=clock)
    seen = []
    for _ in range(8):
        limiter.throttled()
        limiter.throttled()  # a second 153 from the same moment is the same signal
        seen.append(limiter.current_rate)
        clock.advance(DECREASE_COOLDOWN)
    assert seen == [10, 5, 2.5, 1.25, 1.0, 1.0, 1.0, 1.0]  # floor: 1/20 of 20


def test_floor_is_at_least_half_a_request_per_second() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, burst=1, clock=clock)
    for _ in range(10):
        limiter.throttled()
        clock.advance(DECREASE_COOLDOWN)
    assert limiter.current_rate == 0.5


def test_success_recovers_additively_up_to_configured() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=20, burst=1, clock=clock)
    limiter.throttled()
    rates = []
    for _ in range(40):
        limiter.succeeded()
        rates.append(limiter.current_rate)
    steps = {round(b - a, 9) for a, b in zip([10.0, *rates[:-1]], rates, strict=True) if b < 20}
    assert len(steps) == 1  # equal steps: additive
    assert steps.pop() > 0
    assert rates[-1] == 20
    assert max(rates) == 20


def test_throttling_slows_the_actual_pace() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=1, clock=clock)
    limiter.acquire(FAR)
    limiter.throttled()
    before = clock.monotonic()
    for _ in range(10):
        limiter.acquire(FAR)
    assert clock.monotonic() - before == pytest.approx(10 / 5)


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (1, 0)])
def test_invalid_settings_rejected(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(rate=rate, burst=burst, clock=FakeClock())


def test_threads_share_one_budget() -> None:
    clock = SystemClock()
    limiter = RateLimiter(rate=1000, burst=1, clock=clock)
    began = clock.monotonic()

    def worker() -> None:
        for _ in range(50):
            limiter.acquire(began + 10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 200 tokens at 1000/s with a burst of 1 cannot be handed out in under 199 ms.
    assert clock.monotonic() - began >= 0.199


def test_a_call_at_its_deadline_still_goes() -> None:
    clock = FakeClock()
    clock.advance(5)
    assert RateLimiter(rate=0, burst=1, clock=clock).acquire(deadline=5)
    assert RateLimiter(rate=1, burst=1, clock=clock).acquire(deadline=5)


def test_each_success_steps_a_fiftieth_of_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=20, burst=1, clock=clock)
    limiter.throttled()
    limiter.succeeded()
    assert limiter.current_rate == pytest.approx(10 + 20 / 50)


def test_a_rate_of_exactly_one_recovers_too() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=1, clock=clock)
    limiter.throttled()
    assert limiter.current_rate == 1
    limiter.succeeded()
    assert limiter.current_rate == pytest.approx(1 + 2 / 50)
