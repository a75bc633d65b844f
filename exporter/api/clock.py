"""The API's clock, measured from the HTTP ``Date`` header of its answers.

Periods close, settle and windows end by the API's time, not the local wall clock: a host whose
clock drifts or is stepped (NTP, a VM resumed, a container on a skewed node) must not close a
period before the API has reached its end. The estimate is tied to the **monotonic** clock,
so a step of the local wall clock changes nothing:

    api_time(t) = t + base        (t monotonic)

Each answer of the API itself (any HTTP 2xx, whatever its RetCode; an error page from a gateway
in front of it is no sample, the start's one plain GET aside) stamped ``Date: D`` (whole
seconds, rounded down by the server) and received at
monotonic ``r`` gives ``D - r <= base`` (the server stamped it before we received it). The
estimate is the median of the last samples: robust to a stray server with a wrong clock, and
below the true base (by about half a second plus half a round trip) when most servers are
right. Erring low is the safe side: a period then closes a moment later, never earlier.

The estimate is ``settled`` once ``QUORUM`` samples agree with their median (within ``AGREE``
seconds). Nothing that gives time up waits for less: a period closes, a restart skips backfill,
and a new ledger takes its baseline (which fixes the day its counting begins in) only by a
settled clock. So a wrong ``Date`` (the start's plain GET answered by a gateway's error page, a
stray node), even one the local clock happens to agree with, can only make counting wait for a
few more answers; it never moves a ledger.

Until the first answer, the local wall clock stands in (``known`` is False). If answers come
but none carries a usable ``Date`` (a proxy that strips it), the local clock is trusted after
``UNDATED`` of them, said once in the log; ``offset`` then stays unknown.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import statistics
import threading
from collections import deque

from exporter.core.clock import Clock

#: Answers the estimate is the median of.
SAMPLES = 15
#: Samples that must agree with their median before time is given up by it (module docstring).
QUORUM = 3
#: How far (seconds) samples of one clock may differ: the Date header's second, a round trip.
AGREE = 5.0
#: Answers without a usable Date after which, with none dated yet, the local clock is trusted.
UNDATED = 3

log = logging.getLogger(__name__)


class ApiClock:
    """API time from ``Date`` headers; thread-safe (every API call reports to it)."""

    def __init__(self, clock: Clock, samples: int = SAMPLES) -> None:
        self._clock = clock
        self._samples: deque[float] = deque(maxlen=samples)
        self._base: float | None = None
        self._undated = 0  # answers without a usable Date while no dated one has come
        self._lock = threading.Lock()

    @classmethod
    def trusting(cls, clock: Clock) -> ApiClock:
        """An API clock that equals ``clock``'s wall time from the start (for tests)."""
        api = cls(clock)
        api._base = clock.time() - clock.monotonic()
        return api

    @property
    def known(self) -> bool:
        """Whether at least one answer has told the API's time."""
        with self._lock:
            return self._base is not None

    @property
    def settled(self) -> bool:
        """Whether QUORUM answers tell the API's time (or, none dated, the local clock is
        trusted): what a ledger's baseline waits for, since it fixes where counting begins."""
        with self._lock:
            return self._agreed() or (self._base is not None and not self._samples)

    def _agreed(self) -> bool:
        """Whether QUORUM samples agree with their median (call under the lock)."""
        base = self._base
        return base is not None and sum(
            abs(sample - base) <= AGREE for sample in self._samples) >= QUORUM

    def observe(self, date: str | None, received: float) -> None:
        """One answer's ``Date`` header, received at monotonic ``received``."""
        when = _parse(date)
        with self._lock:
            if when is not None:
                self._samples.append(when - received)
                self._base = statistics.median(self._samples)
                return
            if self._samples or self._base is not None:
                return
            self._undated += 1
            if self._undated < UNDATED:
                return
            self._base = self._clock.time() - self._clock.monotonic()
        log.warning("the API's answers carry no usable Date header (a proxy may strip it): "
                    "periods close by this host's clock; keep it in sync")

    def at(self, monotonic: float) -> float:
        """API time at a monotonic instant (the local wall clock while unknown)."""
        with self._lock:
            base = self._base
        if base is None:
            return monotonic + (self._clock.time() - self._clock.monotonic())
        return monotonic + base

    def now(self) -> float:
        """API time now."""
        return self.at(self._clock.monotonic())

    def offset(self) -> float | None:
        """API time minus local wall time, seconds; None while unknown (or never told).

        For people, not for closing periods: centred in the Date header's one-second
        resolution (the lower bound ``at`` uses reads half a second low with clocks in sync).
        """
        with self._lock:
            base = self._base if self._samples else None
        if base is None:
            return None
        return self._clock.monotonic() + base + 0.5 - self._clock.time()


def _parse(value: str | None) -> float | None:
    """Unix seconds of an HTTP-date, or None when absent or unusable."""
    if not value or len(value) > 64:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
