"""What the API's answers say about how it buckets time: information, never a gate.

Counting needs none of it: every stretch boundary is a provider midnight (``core.grid``),
a bucket boundary under minute, hourly and daily buckets alike, so windows add up whatever the
buckets are and however they change. What the ``Usages[].Timestamp`` labels still tell:

- **the width** that fits the recent labels (``uminfer_api_bucket_seconds``; NaN when none
  fits), followed as it changes, each change said once;
- **a contradiction**: a label before the start of a range that starts on a grid line is a
  bucket that straddles the provider's midnight, so ``api.time_zone`` is not the zone the
  cloud's days start in (counting stays exact only if the API's totals are exact): said once,
  counted;
- **implausible labels** (after the range, or a day or more before it: milliseconds?): said
  once, left out;
- **additivity errors**: an audit's one read over settled stretches came out below the sum of
  their final readings (windows rounded outward to buckets that straddle a line, or usage
  lowered after it settled): counted and said once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from itertools import pairwise
from math import gcd
from typing import Any, Protocol

from exporter.core.grid import DAY, Grid
from exporter.core.once import Once
from exporter.core.usage import Totals

log = logging.getLogger(__name__)

#: Answers with two or more labels whose spacing the width is measured from: enough that a few
#: sparse minute labels do not pass for 3-minute buckets, few enough to follow a change soon.
RECENT_ANSWERS = 8
#: Labels whose lying on the grid's lines marks buckets of a provider day.
RECENT_LABELS = 8


class BucketObserver(Protocol):
    """Where contradictions and additivity errors are counted (the self-metrics)."""

    def additivity_error(self, excess_tokens: int) -> None:
        """An audit found the whole below the sum of its parts by ``excess_tokens`` tokens."""
        ...

    def off_grid(self) -> None:
        """An answer labelled usage in a bucket that straddles a grid line."""
        ...


class BucketMeter:
    """The API's buckets as its answers show them; shared by every poller of a process."""

    def __init__(self, observer: BucketObserver | None = None) -> None:
        self._observer = observer
        self._lock = threading.Lock()
        self._steps: deque[int] = deque(maxlen=RECENT_ANSWERS)  # label spacing per answer
        self._on_lines: deque[bool] = deque(maxlen=RECENT_LABELS)  # label on a grid line?
        self._width: int | None = None
        self.off_grid = 0
        self._said = Once()

    @property
    def width(self) -> int | None:
        """The bucket width in seconds that fits the recent labels (a provider day: 86400,
        whatever daylight saving does to it), or None while none does."""
        with self._lock:
            return self._width

    def answered(self, grid: Grid, start: int, end: int, labels: Sequence[int]) -> None:
        """Take the labels of an answer for ``[start, end]`` on ``grid`` (any read)."""
        plausible = [t for t in labels if start - DAY < t <= end]
        if len(plausible) < len(labels):
            odd = next(t for t in labels if not start - DAY < t <= end)
            self._say_once("implausible", "an answer for [%d, %d] labels usage %d, which is no "
                           "bucket start of that range (Usages[].Timestamp not in Unix seconds?): "
                           "such labels are ignored", start, end, odd)
        if plausible and plausible[0] < start and grid.on_line(start):
            self._off_grid(grid, start, plausible[0])
        with self._lock:
            before = self._width
            if len(plausible) > 1:
                self._steps.append(gcd(*(b - a for a, b in pairwise(plausible))))
            # On a grid of days, labels on its lines only are buckets of a provider day.
            self._on_lines.extend(grid.zone is not None and grid.on_line(t) for t in plausible)
            self._width = self._measure()
            after = self._width
        if after != before:
            if after is None:
                log.info("the API's buckets changed: no fixed width fits its recent labels")
            else:
                log.info("the API reports usage in buckets of %d s (from its recent labels; "
                         "counting does not depend on it)", after)

    def _measure(self) -> int | None:
        if len(self._on_lines) >= 2 and all(self._on_lines) and (
                not self._steps or all(step % 3600 == 0 for step in self._steps)):
            return DAY
        width = gcd(*self._steps) if self._steps else 0
        return width if width and DAY % width == 0 else None

    def _off_grid(self, grid: Grid, start: int, label: int) -> None:
        with self._lock:
            self.off_grid += 1
        if self._observer is not None:
            self._observer.off_grid()
        self._say_once("off_grid", "an answer for a range starting at %d, a midnight of %s, "
                       "labels usage at %d: the API's buckets straddle that midnight, so its days "
                       "start in another time zone; set api.time_zone to the zone the cloud cuts "
                       "its days in (counting stays exact only where its totals are)",
                       start, grid.describe(), label)

    def additivity_error(self, ident: str, excess: Totals) -> None:
        """An audit of ``ident`` read one range over closed stretches and got ``excess`` less
        than the sum of their final readings."""
        if self._observer is not None:
            self._observer.additivity_error(excess.tokens)
        self._say_once("additivity", "target %s: one read over settled periods returned %d "
                       "tokens fewer than the sum of their final readings; likely cause: windows "
                       "rounded outward to buckets that straddle a midnight of api.time_zone, or "
                       "usage lowered after it settled (counters may be too high by that much)",
                       ident, excess.tokens)

    def _say_once(self, what: str, message: str, *args: Any) -> None:
        if self._said.first(what):
            log.warning(message, *args)
