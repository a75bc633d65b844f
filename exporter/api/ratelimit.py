"""A shared, adaptive token bucket: halves its rate when throttled, recovers additively."""

from __future__ import annotations

import threading

from exporter.core.clock import Clock

# Several calls in flight see the same throttling; count that as one signal, like TCP per RTT.
DECREASE_COOLDOWN = 1.0
MIN_FLOOR = 0.5


class RateLimiter:
    """Token bucket shared by all targets, with AIMD on throttling; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got {rate} and {burst}")
        self._clock = clock
        self._lock = threading.Lock()
        self._configured = rate
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._last_decrease = -float("inf")
        # Never below 1/20 of the configured rate or 0.5 req/s, whichever is higher.
        self._floor = min(rate, max(rate / 20, MIN_FLOOR))
        # About 50 successes climb back from zero to the configured rate.
        self._step = rate / 50

    @property
    def current_rate(self) -> float:
        """Requests per second allowed right now (0 when unlimited)."""
        with self._lock:
            return self._rate

    def acquire(self, deadline: float) -> bool:
        """Take one token, sleeping until it is due; False (taking nothing) if past ``deadline``."""
        with self._lock:
            now = self._clock.monotonic()
            if now > deadline:
                return False
            if self._rate == 0:
                return True
            wait = self._reserve(now, deadline)
        if wait is None:
            return False
        if wait > 0:
            self._clock.sleep(wait)
        return True

    def throttled(self) -> None:
        """The API said slow down: halve the rate (once per cooldown, not below the floor)."""
        with self._lock:
            now = self._clock.monotonic()
            if self._rate == 0 or now - self._last_decrease < DECREASE_COOLDOWN:
                return
            self._refill(now)
            self._rate = max(self._floor, self._rate / 2)
            self._last_decrease = now

    def succeeded(self) -> None:
        """A call went through: step the rate back toward the configured one."""
        with self._lock:
            if self._rate == 0:
                return
            self._refill(self._clock.monotonic())
            self._rate = min(self._configured, self._rate + self._step)

    def _reserve(self, now: float, deadline: float) -> float | None:
        """Seconds until our token is due, or None if that is past the deadline."""
        self._refill(now)
        # Tokens may go negative: each waiter books the next token, so waiters queue in order.
        wait = max(0.0, (1.0 - self._tokens) / self._rate)
        if now + wait > deadline:
            return None
        self._tokens -= 1.0
        return wait

    def _refill(self, now: float) -> None:
        """Credit tokens for the time since the last refill at the rate in force then."""
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
