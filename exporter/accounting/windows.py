"""Trailing-window math: which API calls read the totals of ``[end - seconds + 1, end]``."""

from __future__ import annotations

DAY = 86400


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
