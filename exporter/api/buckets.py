"""What the API's answers say about how it buckets time, and the period grid that keeps counting
exact under it.

Exactness rests on one property of GetUMInferTokenUsage that is documented nowhere: that
adjacent windows add up to the window covering both. That holds at any grid whose lines are
bucket boundaries, whatever the API does inside a bucket (count exact timestamps, count whole
buckets labelled inside the window, or round the window outward to whole buckets). So:

- **Measure** the bucket from the ``Usages[].Timestamp`` labels every answer carries: all labels
  are bucket starts, so the gcd of their differences is a multiple of the bucket, and any label
  gives the alignment (daily buckets in UTC+8 start at 16:00 UTC).
- **Adapt**: when the measured bucket does not divide ``poll.period`` (or its buckets do not start
  on the period's grid lines), the period becomes the smallest multiple of the bucket, at least
  ``poll.period``, that divides a day, aligned to the buckets.
- **Begin at bucket starts**: once the bucket is measured, a target's counting begins at the
  first bucket boundary after its start, and a part of a bucket that counting would begin inside
  (a target that began before the bucket was measured) is given up and reported: no window can
  tell it from the rest of its bucket.
- **Hold**: until the bucket is measured, an answer that reports usage under a label outside
  the window it was asked for is not counted: its totals may hold usage from outside the window.
- **Refuse**: a bucket that divides no day (measured from enough labels to be believed) leaves
  no grid that keeps the promise: counting stops, with the reason.
- **Audit**: the existing audit re-reads closed stretches as one window; a whole that is less
  than the sum of its parts is an additivity error (windows rounded outward, or usage lowered
  after it settled), counted and said once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from math import gcd
from typing import Any, Protocol

from exporter.core.usage import Totals

log = logging.getLogger(__name__)

DAY = 86400
#: Distinct labels before a measured bucket is believed: the gcd of a few sparse minute labels
#: can look like 3 or 7 minutes; of eight, hardly. A label before the start of a window it was
#: returned for also proves the bucket longer than that gap: more than half the measured width
#: settles it (the true bucket divides the measured one).
CONFIDENT = 8
#: The start probe reads the last day of up to PROBE_TARGETS targets that answer, trying at
#: most PROBE_ATTEMPTS, then earlier days of those, up to PROBE_DAYS (a daily bucket shows one
#: label a day), until the bucket is believed: usually one call, at most 27, once.
PROBE_TARGETS = 3
PROBE_ATTEMPTS = 6
PROBE_DAYS = 8
#: Cycles in which no probed target answers before counting begins without the probe (the
#: bucket is then measured from the regular answers).
PROBE_CYCLES = 3


class MismatchObserver(Protocol):
    """Where additivity errors and held answers are counted (the self-metrics)."""

    def additivity_error(self, excess_tokens: int) -> None:
        """An audit found the whole below the sum of its parts by ``excess_tokens`` tokens."""
        ...

    def held(self) -> None:
        """An answer was not counted: it reported usage outside its window."""
        ...


@dataclass(frozen=True, slots=True)
class Grid:
    """The period grid counting runs on: lines at ``offset + k * period``.

    ``bucket`` is the API's measured bucket (None until measured); ``adapted`` when the grid is
    not ``poll.period``'s own, because the buckets are coarser or start elsewhere.
    """

    period: int
    offset: int = 0
    bucket: int | None = None
    adapted: bool = False

    def on_boundary(self, t: int) -> bool:
        """Whether ``t`` starts a bucket (always true while the bucket is not measured)."""
        return self.bucket is None or (t - self.offset) % self.bucket == 0

    def first_boundary(self, t: int) -> int:
        """Where counting that is to begin at ``t`` begins: the first bucket start at or after
        ``t`` (``t`` itself while the bucket is not measured), since no window can tell part of
        a bucket from the rest: with windows rounded outward, the part before ``t`` would be
        counted."""
        if self.bucket is None:
            return t
        return t + (self.offset - t) % self.bucket


@dataclass(frozen=True, slots=True)
class Refusal:
    """No grid keeps counting exact; ``reason`` says why, for the log and the targets."""

    reason: str


class BucketMeter:
    """The API's bucket as measured from its answers; shared by every poller of a process and
    kept in the state, so a restart need not measure it again."""

    def __init__(self, observer: MismatchObserver | None = None) -> None:
        self._observer = observer
        self._lock = threading.Lock()
        self._anchor: int | None = None  # one label seen
        self._step = 0  # gcd of the differences from the anchor; 0 until two labels differ
        self._distinct = 0  # distinct labels seen (counted up to CONFIDENT)
        self._recent: set[int] = set()  # labels seen, until CONFIDENT of them
        self._floor = 0  # the bucket is longer than this: a label this far before a window
        self.probed = False  # the start probe is over (answered, or tried PROBE_CYCLES times)
        self._probe_failures = 0
        self.additivity_errors = 0
        self.held_answers = 0
        self._said: set[str] = set()
        self._last_grid: Grid | Refusal | None = None

    @property
    def bucket(self) -> int | None:
        """The measured bucket in seconds once believed (see CONFIDENT), or None."""
        with self._lock:
            return self._believed()

    def _believed(self) -> int | None:
        step = self._step
        if not step or (self._distinct < CONFIDENT and 2 * self._floor <= step):
            return None
        return step

    @property
    def needs_probe(self) -> bool:
        """Whether counting should wait for a read of the last day (nothing measured yet)."""
        with self._lock:
            return self._believed() is None and not self.probed

    def probe_done(self, *, answered: bool) -> None:
        """One try of the start probe is over: ``answered`` if any probed target answered."""
        with self._lock:
            self._probe_failures += not answered
            self.probed = answered or self._probe_failures >= PROBE_CYCLES
            gave_up = not answered and self.probed
        if gave_up:
            log.warning("no target answered the start probe in %d cycles: counting begins "
                        "without measuring the API's buckets first (they are measured from the "
                        "regular answers)", PROBE_CYCLES)

    def answered(self, start: int, end: int, labels: tuple[int, ...]) -> tuple[int, ...]:
        """Take the labels of an answer for ``[start, end]``; the ones that can be bucket starts
        of it. A label after the window, or a day or more before it, cannot (milliseconds, say):
        such labels are left out of the measurement, said once."""
        plausible = tuple(t for t in labels if start - DAY < t <= end)
        if plausible and plausible[0] < start:
            with self._lock:
                self._floor = max(self._floor, start - plausible[0])
        if len(plausible) < len(labels):
            odd = next(t for t in labels if not start - DAY < t <= end)
            self._say_once("implausible", "an answer for [%d, %d] labels usage %d, which is no "
                           "bucket start of that window (Usages[].Timestamp not in Unix seconds?): "
                           "such labels are ignored", start, end, odd)
        self.observe(plausible)
        return plausible

    def observe(self, labels: Iterable[int]) -> None:
        """Take the labels of any answer (count, audit, window or probe read)."""
        with self._lock:
            for label in labels:
                if self._anchor is None:
                    self._anchor = label
                self._step = gcd(self._step, label - self._anchor)
                if self._distinct < CONFIDENT and label not in self._recent:
                    self._recent.add(label)
                    self._distinct = len(self._recent)
                    if self._distinct >= CONFIDENT:
                        self._recent = set()

    def grid(self, period: int) -> Grid | Refusal:
        """The grid for ``poll.period``: its own while the bucket divides it and is aligned to
        it, else the smallest aligned multiple of the bucket that divides a day; a Refusal when
        the bucket divides no day. Said once each time it changes."""
        with self._lock:
            result = self._grid(period)
            changed, self._last_grid = result != self._last_grid, result
        if changed:
            self._say_grid(period, result)
        return result

    def _grid(self, period: int) -> Grid | Refusal:
        step, anchor = self._believed(), self._anchor
        if not step or anchor is None:
            return Grid(period)
        if DAY % step:
            return Refusal(
                f"the API reports usage in buckets of {step} s, and no multiple of that up to a "
                "day divides a day: no period grid can keep counters exact, so nothing is "
                "counted (see docs/accounting.md, 'What the API must do')")
        # A bucket divides a day on every API seen; a gcd that does not (too few labels yet)
        # is a multiple of it, and so is its gcd with a day.
        bucket = gcd(step, DAY)
        offset = anchor % bucket
        if period % bucket == 0 and offset == 0:
            return Grid(period, 0, bucket)
        cell = next(m for m in range(bucket, DAY + 1, bucket) if m >= period and DAY % m == 0)
        return Grid(cell, offset, bucket, adapted=True)

    @staticmethod
    def _say_grid(period: int, grid: Grid | Refusal) -> None:
        if isinstance(grid, Refusal):
            log.error("counting stopped: %s", grid.reason)
        elif grid.adapted:
            log.warning(
                "the API reports usage in buckets of %d s (measured from its answers), which "
                "poll.period (%d s) would cut: counting now runs on %d s periods starting at "
                "bucket boundaries (offset %d s); new targets begin counting at the next "
                "boundary", grid.bucket, period, grid.period, grid.offset)
        elif grid.bucket is not None:
            log.info("the API reports usage in buckets of %d s; poll.period (%d s) is a multiple",
                     grid.bucket, period)

    def hold(self, start: int, end: int, labels: tuple[int, ...], grid: Grid) -> bool:
        """Whether a count answer for ``[start, end]`` must not be counted: it reports usage
        under a label outside the window while the window may cut a bucket (the bucket is not
        measured, or the window starts inside one), so its totals may hold usage from outside
        it. Call after :meth:`answered` took the answer's labels."""
        if not labels or (labels[0] >= start and labels[-1] <= end):
            return False
        if grid.bucket is not None and grid.on_boundary(start):
            return False  # a label before a bucket start would be no bucket start: trusted
        with self._lock:
            self.held_answers += 1
        if self._observer is not None:
            self._observer.held()
        self._say_once("held", "an answer for [%d, %d] reports usage under the label %d, outside "
                       "the window: the API's buckets are coarser than the windows read; such "
                       "answers are not counted until the bucket is measured", start, end,
                       labels[0] if labels[0] < start else labels[-1])
        return True

    def additivity_error(self, ident: str, excess: Totals) -> None:
        """An audit of ``ident`` read one window over closed stretches and got ``excess`` less
        than the sum of their final readings."""
        with self._lock:
            self.additivity_errors += 1
            bucket = self._believed()
        if self._observer is not None:
            self._observer.additivity_error(excess.tokens)
        cause = (f"windows rounded outward to the API's {bucket} s buckets"
                 if bucket else "windows rounded outward to buckets coarser than the period")
        self._say_once("additivity", "target %s: one read over settled periods returned %d "
                       "tokens fewer than the sum of their final readings; likely cause: %s, or "
                       "usage lowered after it settled (counters may be too high by that much)",
                       ident, excess.tokens, cause)

    def _say_once(self, what: str, message: str, *args: Any) -> None:
        with self._lock:
            if what in self._said:
                return
            self._said.add(what)
        log.warning(message, *args)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for the state document."""
        with self._lock:
            return {"anchor": self._anchor, "step": self._step, "distinct": self._distinct,
                    "floor": self._floor}

    def restore(self, data: Any) -> None:
        """Take what a saved :meth:`to_dict` measured; TypeError/ValueError when malformed."""
        if not isinstance(data, dict):
            raise TypeError("api buckets must be an object")
        anchor, step, distinct = data.get("anchor"), data.get("step", 0), data.get("distinct", 0)
        floor = data.get("floor", 0)
        for name, value in (("step", step), ("distinct", distinct), ("floor", floor)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**40:
                raise ValueError(f"api buckets: {name} must be a small non-negative integer")
        if anchor is not None and (isinstance(anchor, bool) or not isinstance(anchor, int)
                                   or not 0 <= anchor < 2**40):
            raise ValueError("api buckets: anchor must be a Unix second or null")
        with self._lock:
            self._anchor, self._step = anchor, step if anchor is not None else 0
            # Below CONFIDENT the labels themselves are not kept: count them afresh.
            self._distinct = CONFIDENT if anchor is not None and distinct >= CONFIDENT else 0
            self._recent = set()
            self._floor = floor if anchor is not None else 0
