"""Trailing-window math: which API calls read the totals of ``[end - seconds + 1, end]``, and
when a narrower window is a sum of the rows of a wider window's answer."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from math import gcd

from exporter.core.grid import Grid
from exporter.core.usage import ZERO, Reading, Totals

DAY = 86400
#: The most a window's end is moved back so that it ends where a bucket of the API's ends:
#: within a minute or so the gauges are as fresh, and narrower windows become sums of rows.
MAX_ALIGN = 300
NO_ROWS = "the API's answers carry no Usages rows that add up to their totals"
STRADDLED = "the API's buckets (hourly, daily?) may straddle the window's start"


def window_slices(end: int, seconds: int) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` slices covering the trailing window, none longer than a day.

    The API treats both ends as inclusive, so adjacent slices are ``[a, b]`` and ``[b+1, c]``.
    """
    if seconds < 1:
        raise ValueError("a window is at least one second long")
    slices: list[tuple[int, int]] = []
    start = end - seconds + 1
    while start <= end:
        stop = min(end, start + DAY - 1)
        slices.append((start, stop))
        start = stop + 1
    return slices


def aligned_end(grid: Grid, now: int, width: int | None) -> int:
    """Where the windows read at ``now`` end: the last second before the latest line of the
    API's buckets of ``width`` seconds (counted from the grid's midnight) when that is at most
    ``MAX_ALIGN`` back, else ``now``."""
    if width is None or width > MAX_ALIGN:
        return now
    after = now + 1
    return now - (after - grid.start(after)) % width


class WindowRows:
    """The per-bucket rows of one window's answers (its ≤ 1-day slices), from which a narrower
    window ending at the same second is summed where no bucket straddles its first second."""

    def __init__(self, end: int, width: int | None) -> None:
        """``width``: the API's bucket width as measured across answers (None: unknown), used
        only when an answer shows fewer than two labels of its own."""
        self._end, self._width = end, width
        self._rows: dict[int, Totals] = {}
        self._problem: str | None = None

    def add(self, reading: Reading) -> None:
        """Take the answer for one slice; rows that do not add up to its totals are unusable."""
        rows = reading.rows
        if len(rows) != len(reading.labels) or sum(rows, ZERO) != reading.totals:
            self._problem = NO_ROWS
            return
        for label, totals in zip(reading.labels, rows, strict=True):
            self._rows[label] = self._rows.get(label, ZERO) + totals

    def total(self, seconds: int) -> Totals | str:
        """The window of ``seconds`` ending at the end, or why it is no sum of these rows."""
        if self._problem is not None:
            return self._problem
        edge = self._end - seconds + 1
        labels = sorted(self._rows)
        if labels and labels[-1] > self._end:
            return "its Usages rows are labelled after the window's end"
        step = _spacing(labels) or self._width
        if labels and labels[0] < edge and (step is None or (edge - labels[0]) % step):
            return STRADDLED
        return sum((self._rows[t] for t in labels if t >= edge), ZERO)


def _spacing(labels: Sequence[int]) -> int | None:
    """The largest width every bucket start in ``labels`` is a line of (a multiple of the
    true width, so each of its lines begins a bucket); None with fewer than two labels."""
    if len(labels) < 2:
        return None
    return gcd(*(b - a for a, b in pairwise(labels)))
