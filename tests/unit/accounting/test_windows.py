"""Trailing-window math edge by edge: the slices a window is read in, where windows end, and
when a narrower window is the sum of a wider one's rows (the whole exporter against the
simulator: tests/unit/service/test_window_rows.py)."""

from __future__ import annotations

import pytest

from exporter.accounting.windows import (
    DAY,
    NO_ROWS,
    STRADDLED,
    WindowRows,
    aligned_end,
    window_slices,
)
from exporter.core.grid import Grid
from exporter.core.usage import Reading, Totals

H = 3600
END = 1_767_225_600 + 5 * H + 59  # a minute's last second
LATE = "its Usages rows are labelled after the window's end"


def tok(n: int) -> Totals:
    return Totals(n, 0, n, 1, 0)


def rows(end: int, *buckets: tuple[int, int], width: int | None = None) -> WindowRows:
    taken = WindowRows(end, width)
    taken.add(Reading(sum((tok(n) for _, n in buckets), Totals()),
                      tuple(label for label, _ in buckets), tuple(tok(n) for _, n in buckets)))
    return taken


# -- window_slices -------------------------------------------------------------------------

def test_a_one_second_window_is_one_slice_of_that_second() -> None:
    assert window_slices(END, 1) == [(END, END)]


def test_a_window_shorter_than_a_second_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match=r"^a window is at least one second long$"):
        window_slices(END, 0)


def test_a_long_window_is_read_in_adjacent_slices_of_at_most_a_day() -> None:
    first = END - 2 * DAY - 5 + 1
    assert window_slices(END, 2 * DAY + 5) == [
        (first, first + DAY - 1), (first + DAY, first + 2 * DAY - 1), (first + 2 * DAY, END)]
    assert window_slices(END, DAY) == [(END - DAY + 1, END)]


# -- aligned_end -----------------------------------------------------------------------------

KATHMANDU = Grid("Asia/Kathmandu")
MIDNIGHT = 1_767_204_900  # 2026-01-01 00:00 in Kathmandu (+05:45): no Unix 240 s line


def test_windows_end_before_the_latest_bucket_line_counted_from_the_grids_midnight() -> None:
    assert KATHMANDU.start(MIDNIGHT) == MIDNIGHT
    assert aligned_end(KATHMANDU, MIDNIGHT + 3 * 240 + 100, 240) == MIDNIGHT + 3 * 240 - 1
    assert aligned_end(KATHMANDU, MIDNIGHT + 3 * 240 - 1, 240) == MIDNIGHT + 3 * 240 - 1


@pytest.mark.parametrize(("width", "now", "end"), [
    (None, END + 30, END + 30), (60, END + 30, END), (60, END + 60, END + 60),
    (300, END + 30, END + 30 - 90),  # five minutes back at most: still aligned
    (301, END + 30, END + 30), (H, END + 30, END + 30),  # further back is too far
])
def test_windows_end_on_a_line_of_small_buckets_only(width: int | None, now: int,
                                                     end: int) -> None:
    assert aligned_end(Grid(), now, width) == end


# -- WindowRows ------------------------------------------------------------------------------

def test_the_narrower_window_sums_the_rows_from_its_first_second_on() -> None:
    edge = END - H + 1
    taken = rows(END, (edge - 60, 5), (edge, 7), (END, 11))  # a row at each end, one before
    assert taken.total(H) == tok(7) + tok(11)
    assert taken.total(H + 60) == tok(5) + tok(7) + tok(11)
    assert taken.total(60) == tok(11)


def test_rows_of_one_bucket_in_two_slices_add_up() -> None:
    taken = WindowRows(END, 60)
    taken.add(Reading(tok(3), (END - 59,), (tok(3),)))
    taken.add(Reading(tok(4) + tok(5), (END - 119, END - 59), (tok(4), tok(5))))
    assert taken.total(60) == tok(3) + tok(5)
    assert taken.total(120) == tok(3) + tok(4) + tok(5)


def test_no_rows_at_all_is_no_usage() -> None:
    assert rows(END).total(H) == Totals()
    assert rows(END, width=60).total(60) == Totals()


@pytest.mark.parametrize("reading", [
    Reading(tok(5), (END - 60,), (tok(4),)),  # a row Type missing, say
    Reading(tok(5), (END - 60,)),  # labels without rows (an older Reading)
    Reading(tok(5), (END - 120, END - 60), (tok(5),)),  # rows add up, but not one per label
], ids=["short", "no-rows", "not-one-per-label"])
def test_rows_that_are_not_the_answer_make_no_sum(reading: Reading) -> None:
    taken = WindowRows(END, 60)
    taken.add(reading)
    taken.add(Reading(tok(1), (END,), (tok(1),)))  # a good slice does not mend a bad one
    assert taken.total(60) == NO_ROWS


def test_rows_labelled_after_the_end_are_refused_even_behind_good_ones() -> None:
    assert rows(END, (END - 60, 1), (END - 30, 1), (END + 1, 1)).total(H) == LATE
    assert rows(END, (END - 60, 1), (END, 1)).total(H) == tok(1) + tok(1)  # the last second


def test_a_bucket_on_a_line_of_the_rows_own_spacing_is_no_straddle_whatever_its_phase() -> None:
    end = 1_000_000_014  # minute buckets that start 15 s past the minute
    edge = end - H + 1
    taken = rows(end, (edge - 120, 5), (edge - 60, 7), (edge, 11))
    assert taken.total(H) == tok(11)
    assert taken.total(H - 1) == STRADDLED  # its start inside a bucket


def test_the_measured_width_stands_in_only_where_the_rows_show_no_spacing() -> None:
    edge = END - H + 1
    assert rows(END, (edge - 60, 3), width=60).total(H) == Totals()
    assert rows(END, (edge - 60, 3)).total(H) == STRADDLED  # no width known: it may straddle
    assert rows(END, (edge - 60, 3), (edge, 4)).total(H) == tok(4)  # two labels: spacing 60
    assert rows(END, (edge - 90, 3), (edge - 30, 4), width=60).total(H) == STRADDLED


def test_a_single_label_at_or_after_the_start_needs_no_width() -> None:
    edge = END - H + 1
    assert rows(END, (edge, 3)).total(H) == tok(3)
    assert rows(END, (edge + 60, 3)).total(H) == tok(3)


def test_only_the_first_label_decides_a_straddle() -> None:
    edge = END - H + 1
    hourly = rows(END, (edge - 1800, 5), (edge + 1800, 7))  # hours on the half hour
    assert hourly.total(H) == STRADDLED
