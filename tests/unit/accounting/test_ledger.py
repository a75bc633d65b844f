"""Ledger unit tests: planning, recording, closing, merging, rebasing, auditing, serialising."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.accounting.ledger import Ledger, Read
from exporter.core.grid import DAY, Grid
from exporter.core.usage import ZERO, Totals

H = 3600
T0 = 1_700_000_000 // DAY * DAY  # a UTC midnight, so hour boundaries are easy to read


def tok(n: int) -> Totals:
    """Totals with ``n`` input tokens."""
    return Totals(input_tokens=n, tokens=n)


def test_first_period_starts_at_origin_and_read_ends_now() -> None:
    led = Ledger(T0 + 100, H, 600)
    assert led.plan(T0 + 99) == []
    assert led.plan(T0 + 500) == [Read(T0 + 100, T0 + 500, (T0 + 100,))]
    assert led.settled_until() == T0 + 99


def test_steady_state_reads_two_periods_only_during_settle() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 3000, (T0,)), tok(5), T0 + 3000)
    just_after = led.plan(T0 + H + 60)
    assert just_after == [Read(T0, T0 + H - 1, (T0,)), Read(T0 + H, T0 + H + 60, (T0 + H,))]
    led.record(just_after[0], tok(7), T0 + H + 60)
    assert led.settled_until() == T0 - 1  # read before end + settle: still open
    later = led.plan(T0 + H + 600)
    led.record(later[0], tok(8), T0 + H + 600)
    assert led.settled_until() == T0 + H - 1
    assert led.settled_totals() == tok(8)
    assert led.plan(T0 + H + 660) == [Read(T0 + H, T0 + H + 660, (T0 + H,))]


def test_calls_per_poll_average_one_plus_settle_over_period() -> None:
    led, calls, polls = Ledger(T0, H, 600), 0, 0
    for now in range(T0, T0 + DAY, 60):
        reads = led.plan(now)
        calls, polls = calls + len(reads), polls + 1
        for read in reads:
            led.record(read, ZERO, now)
    assert calls / polls == pytest.approx(1 + 600 / H, abs=0.01)


def test_periods_settling_exactly_now_are_merged() -> None:
    led = Ledger(T0, H, 600)
    now = T0 + 2 * H - 1 + 600  # hour 1 settles at this very second
    assert [(r.start, r.end) for r in led.plan(now)] == [(T0, T0 + 2 * H - 1), (T0 + 2 * H, now)]


def test_counter_is_closed_sum_plus_latest_open_readings() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(10), T0 + H + 600)  # closes
    led.record(Read(T0 + H, T0 + H + 600, (T0 + H,)), tok(3), T0 + H + 600)
    led.record(Read(T0 + H, T0 + H + 660, (T0 + H,)), tok(4), T0 + H + 660)
    assert led.counters() == tok(14)
    assert led.settled_totals() == tok(10)


def test_lower_reading_is_a_revision_and_the_higher_is_kept() -> None:
    led = Ledger(T0, H, 600)
    read = Read(T0, T0 + 100, (T0,))
    led.record(read, Totals(input_tokens=10, output_tokens=5), T0 + 100)
    led.record(read, Totals(input_tokens=8, output_tokens=9), T0 + 200)
    assert led.counters() == Totals(input_tokens=10, output_tokens=9)
    assert led.revisions == 1
    assert led.revised_away == Totals(input_tokens=2)


def test_failed_read_changes_nothing_and_outage_is_caught_up_in_day_slices() -> None:
    led = Ledger(T0 + 1800, H, 600)
    led.record(Read(T0 + 1800, T0 + 2000, (T0 + 1800,)), tok(1), T0 + 2000)
    now = T0 + 3 * DAY  # the API failed for three days: nothing was recorded meanwhile
    reads = led.plan(now)
    assert [(r.start, r.end) for r in reads] == [
        (T0 + 1800, T0 + H - 1),  # read before: read alone, so a lowered reading shows
        (T0 + H, T0 + DAY + H - 1),  # never-read settled hours merged, at most a day per call
        (T0 + DAY + H, T0 + 2 * DAY + H - 1),
        (T0 + 2 * DAY + H, T0 + 3 * DAY - H - 1),
        (T0 + 3 * DAY - H, T0 + 3 * DAY - 1),  # not settled yet: read alone
        (T0 + 3 * DAY, T0 + 3 * DAY),
    ]
    assert reads[1].stretches == tuple(range(T0 + H, T0 + DAY + H, H))
    for read in reads:
        led.record(read, tok(2), now)
    assert led.settled_until() == T0 + 3 * DAY - H - 1
    # The first stretch's reading (2) replaces its earlier one (1): no revision, no double count.
    assert led.counters().input_tokens == 12
    assert led.revisions == 0


def test_merged_group_never_spans_a_day_and_keeps_earlier_readings() -> None:
    led = Ledger(T0, H, 0)
    led.record(Read(T0 + 5 * H, T0 + 5 * H + 10, (T0 + 5 * H,)), tok(50), T0 + 5 * H + 10)
    reads = led.plan(T0 + 2 * DAY + 10)
    assert [(r.start, r.end) for r in reads[:3]] == [
        (T0, T0 + 5 * H - 1), (T0 + 5 * H, T0 + 6 * H - 1), (T0 + 6 * H, T0 + DAY + 6 * H - 1)]
    assert all(r.end - r.start < DAY for r in reads)
    led.record(reads[0], tok(7), T0 + 2 * DAY + 10)
    led.record(reads[1], tok(20), T0 + 2 * DAY + 10)  # lower than the 50 seen for hour 5
    assert led.revisions == 1
    assert led.settled_totals() == tok(57)


def test_one_second_first_period_still_keeps_merged_reads_under_a_day() -> None:
    led = Ledger(T0 + H - 1, H, 0)  # the first period is a single second
    reads = led.plan(T0 + 3 * DAY)
    assert (reads[0].start, reads[0].end) == (T0 + H - 1, T0 + DAY - 1)
    assert all(r.end - r.start < DAY for r in reads)


def test_out_of_order_completion_closes_oldest_first() -> None:
    led = Ledger(T0, H, 0)
    first, second, _ = led.plan(T0 + DAY + H)
    led.record(second, tok(2), T0 + DAY + H)
    assert led.settled_until() == T0 - 1  # closed time is a prefix
    assert [r.start for r in led.plan(T0 + DAY + H)] == [T0, T0 + DAY + H]  # settled one skipped
    led.record(first, tok(1), T0 + DAY + H)
    assert led.settled_until() == T0 + DAY + H - 1
    assert led.counters() == tok(3)


def test_stale_read_is_ignored() -> None:
    led = Ledger(T0, H, 0)
    (read,) = led.plan(T0 + H)[:1]
    assert led.record(read, tok(1), T0 + H)
    assert not led.record(read, tok(5), T0 + H)  # that period is closed
    assert not led.record(Read(T0 + 10, T0 + 20, (T0 + 10,)), tok(5), T0 + H)
    assert led.counters() == tok(1)


def test_max_reads_paces_catch_up_oldest_first() -> None:
    led = Ledger(T0, H, 600)
    reads = led.plan(T0 + 5 * DAY, max_reads=3)
    # The oldest first, but the newest always: a backlog never keeps the current hour waiting.
    assert [(r.start, r.end) for r in reads] == [
        (T0, T0 + DAY - 1), (T0 + DAY, T0 + 2 * DAY - 1), (T0 + 5 * DAY, T0 + 5 * DAY)]


def test_rebase_skips_old_unread_time_and_keeps_counters() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 1000, (T0,)), tok(9), T0 + 1000)
    now = T0 + 10 * DAY + 123
    skipped = led.rebase(now, DAY)
    keep_from = now - DAY - 123  # back to the grid line: never a line inside an API bucket
    assert skipped == keep_from - T0
    assert led.skipped_seconds == skipped
    assert led.counters() == tok(9)
    assert led.settled_until() == keep_from - 1
    assert led.plan(now)[0].start == keep_from
    assert led.rebase(now, DAY) == 0


def test_rebase_keeps_a_straddling_read_period_whole() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 1000, (T0,)), tok(9), T0 + 1000)
    assert led.rebase(T0 + 1800 + DAY, DAY) == 0  # re-reading only its tail would count twice
    assert led.plan(T0 + 1800 + DAY)[0].start == T0


def test_retune_widens_an_open_stretch_on_a_new_grid_line_and_uses_the_grid_after_it() -> None:
    led = Ledger(T0, H, 0)
    led.record(Read(T0, T0 + 100, (T0,)), tok(1), T0 + 100)
    led.retune(2 * H, 0)  # T0 is a line of the 2 h grid: its stretch becomes that cell
    reads = led.plan(T0 + 5 * H)
    assert [(r.start, r.end) for r in reads] == [
        (T0, T0 + 2 * H - 1), (T0 + 2 * H, T0 + 4 * H - 1), (T0 + 4 * H, T0 + 5 * H)]
    assert reads[1].stretches == (T0 + 2 * H,)
    led.record(reads[0], tok(5), T0 + 5 * H)  # the wider read counts the whole cell once
    assert led.counters() == tok(5)


def test_retune_keeps_a_read_stretch_off_the_new_grid_lines() -> None:
    led = Ledger(T0, H, 0)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(1), T0 + H)  # hour 0, closed
    led.record(Read(T0 + H, T0 + H + 100, (T0 + H,)), tok(2), T0 + H + 100)
    led.retune(2 * H, 0)  # T0 + H is inside a 2 h cell: kept as it was read
    reads = led.plan(T0 + 5 * H)
    assert [(r.start, r.end) for r in reads] == [
        (T0 + H, T0 + 2 * H - 1), (T0 + 2 * H, T0 + 4 * H - 1), (T0 + 4 * H, T0 + 5 * H)]


def test_a_grid_of_provider_days_cuts_at_their_midnights() -> None:
    # The default zone is UTC+8: its days start at 16:00 UTC; T0 (a UTC midnight) is 8 h in.
    led = Ledger(T0, Grid(), 0)
    assert [(r.start, r.end) for r in led.plan(T0 + DAY)] == [
        (T0, T0 + 16 * H - 1), (T0 + 16 * H, T0 + DAY)]
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert restored.grid == Grid("Asia/Shanghai")
    with pytest.raises(ValueError, match="offset"):
        Ledger(T0, H, 0, offset=H)


@pytest.mark.parametrize(("day", "hours"), [(5, 25), (6, 24), (12, 24)])
def test_a_day_that_daylight_saving_lengthens_is_one_period(day: int, hours: int) -> None:
    # America/New_York left daylight saving on 2023-11-05: that day had 25 hours.
    zone = Grid("America/New_York")
    start = zone.start(int(datetime.datetime(2023, 11, day, 12, tzinfo=datetime.UTC).timestamp()))
    led = Ledger(start, zone, 0)
    (read,) = led.plan(start + 3 * H)
    assert (read.start, read.end) == (start, start + 3 * H)
    led.record(read, tok(1), start + 3 * H)
    closing = led.plan(start + hours * H)[0]
    assert (closing.start, closing.end) == (start, start + hours * H - 1)
    led.record(closing, tok(2), start + hours * H)
    assert led.settled_until() == start + hours * H - 1
    assert Ledger.from_dict(led.to_dict()).settled_until() == start + hours * H - 1


def test_a_fresh_ledger_counts_growth_above_its_first_reading_only() -> None:
    # Begins mid-day: the day so far is its baseline; what appears later counts, late usage
    # timestamped before the start included; the next day counts from zero.
    led = Ledger(T0, H, 600, fresh=True)
    first = led.plan(T0 + 5 * H + 17)
    assert first == [Read(T0 + 5 * H, T0 + 5 * H + 17, (T0 + 5 * H,))]  # moved to its period
    led.record(first[0], tok(40), T0 + 5 * H + 17)
    assert (led.counters(), led.baseline, led.fresh) == (ZERO, tok(40), False)
    again = led.plan(T0 + 5 * H + 77)[0]
    led.record(again, tok(43), T0 + 5 * H + 77)
    assert led.counters() == tok(3)
    led.record(again, tok(41), T0 + 5 * H + 80)  # a revision: the higher reading stays
    assert led.counters() == tok(3)
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    closing = restored.plan(T0 + 6 * H + 600)
    assert [(r.start, r.end) for r in closing] == [(T0 + 5 * H, T0 + 6 * H - 1),
                                                   (T0 + 6 * H, T0 + 6 * H + 600)]
    restored.record(closing[0], tok(45), T0 + 6 * H + 600)
    restored.record(closing[1], tok(2), T0 + 6 * H + 600)
    assert restored.counters() == tok(7)
    assert restored.settled_totals() == tok(5)
    assert restored.settled_until() == T0 + 6 * H - 1


def test_a_fresh_ledger_moves_with_time_until_its_first_read_succeeds() -> None:
    led = Ledger(T0, H, 600, fresh=True)
    led.plan(T0 + 100)  # its read fails: nothing is recorded
    (read,) = led.plan(T0 + 3 * H + 5)
    assert (read.start, led.origin, led.settled_until()) == (T0 + 3 * H, T0 + 3 * H, T0 + 3 * H - 1)


def test_an_audit_below_the_sum_of_its_parts_is_an_additivity_error() -> None:
    led = Ledger(T0, H, 0, audit=True)
    for i in range(2):
        led.record(Read(T0 + i * H, T0 + (i + 1) * H - 1, (T0 + i * H,)), tok(10),
                   T0 + (i + 1) * H)
    audit = next(r for r in led.plan(T0 + 4 * H) if r.kind == "audit")
    assert (audit.start, audit.end) == (T0, T0 + 2 * H - 1)
    assert led.record(audit, tok(12), T0 + 4 * H).shortfall == tok(8)  # the parts said 20
    assert (led.additivity_errors, led.additivity_excess.tokens) == (1, 8)
    assert led.counters() == tok(20)  # an audit never changes what was counted
    assert Ledger.from_dict(led.to_dict()).additivity_excess == led.additivity_excess


def test_retune_never_lets_an_unread_period_overlap_a_read_one() -> None:
    led = Ledger(T0, H, 0)
    led.record(Read(T0 + H, T0 + H + 10, (T0 + H,)), tok(1), T0 + H + 10)  # hour 0 failed
    led.retune(2 * H, 0)  # on the new grid, hour 0 would run into hour 1
    reads = led.plan(T0 + H + 20)
    assert [(r.start, r.end) for r in reads] == [(T0, T0 + H - 1), (T0 + H, T0 + H + 20)]


def test_audit_reports_usage_after_close_without_counting_it() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(10), T0 + H + 600)
    # Due at end + 2 * settle, read once it has waited max(settle, period) more.
    assert all(r.kind == "count" for r in led.plan(T0 + H - 1 + 1200 + H - 1))
    audit = led.plan(T0 + H - 1 + 1200 + H)[-1]
    assert audit == Read(T0, T0 + H - 1, (T0,), "audit")
    assert led.record(audit, tok(13), T0 + H + 1200)
    assert led.late_after_settle == tok(3)
    assert led.counters() == tok(10)
    assert all(r.kind == "count" for r in led.plan(T0 + 3 * H))  # once per period


def test_audit_lower_than_final_reports_nothing() -> None:
    led = Ledger(T0, H, 0, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), Totals(input_tokens=5, output_tokens=5), T0 + H)
    (audit,) = [r for r in led.plan(T0 + 2 * H) if r.kind == "audit"]
    led.record(audit, Totals(input_tokens=3, output_tokens=6), T0 + H)
    assert led.late_after_settle == Totals(output_tokens=1)


def test_audit_off_by_default() -> None:
    led = Ledger(T0, H, 0)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(1), T0 + H)
    assert all(r.kind == "count" for r in led.plan(T0 + 3 * H))


@pytest.mark.parametrize(("period", "settle"), [(0, 0), (7000, 0), (2 * DAY, 0), (H, -1)])
def test_bad_grid_is_rejected_with_reason(period: int, settle: int) -> None:
    with pytest.raises(ValueError, match=r"period must divide|settle must not"):
        Ledger(T0, period, settle)


def test_dict_round_trip_is_json_and_continues_identically() -> None:
    led = Ledger(T0 + 7, H, 600, audit=True)
    for now in range(T0 + 7, T0 + 5 * H, 300):
        for read in led.plan(now):
            led.record(read, tok((now - T0) // 100), now)
    copy = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert copy.to_dict() == led.to_dict()
    assert copy.plan(T0 + 6 * H) == led.plan(T0 + 6 * H)


def test_from_dict_rejects_overlapping_stretches() -> None:
    data = Ledger(T0, H, 0).to_dict()
    seg = {"start": T0, "end": T0 + H - 1, "totals": {}, "final": False}
    data["open"] = [seg, {**seg, "start": T0 + 10}]
    with pytest.raises(ValueError, match="overlaps"):
        Ledger.from_dict(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4000), st.integers(0, 50), st.booleans()), max_size=60))
def test_counters_are_monotonic_under_any_readings(steps: list[tuple[int, int, bool]]) -> None:
    led, now, last = Ledger(T0, 600, 300), T0, ZERO
    for advance, value, ok in steps:
        now += advance
        for read in led.plan(now):
            if ok:
                led.record(read, tok(value), now)
        assert led.counters().dominates(last)
        last = led.counters()


@pytest.mark.parametrize(("length", "ok"), [(1, True), (DAY - 1, True), (DAY, True),
                                            (31 * H, True), (31 * H + 1, False), (0, False)])
def test_a_saved_stretch_may_hold_a_day_and_no_more(length: int, ok: bool) -> None:
    # No API call spans more than a provider day (31 h at the longest, Antarctica/Vostok's
    # 1994-01-31; see core.grid), so a saved stretch longer than that is damage.
    led = Ledger(T0, H, 600)
    data = led.to_dict()
    data["open"] = [{"start": T0, "end": T0 + length - 1, "totals": {"tokens": 1},
                     "final": False, "read_to": T0 - 1}]
    if ok:
        assert Ledger.from_dict(data).counters() == Totals(tokens=1)
    else:
        with pytest.raises(ValueError, match=r"is empty or longer than a day"):
            Ledger.from_dict(data)


def test_give_up_keeps_what_was_read_and_counts_seconds_per_reason() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 1000, (T0,)), tok(5), T0 + 1000)  # read in part, then rejected
    closing = led.plan(T0 + 2 * H + 600)[0]
    assert closing == Read(T0, T0 + H - 1, (T0,))
    assert led.give_up(Read(T0 + H, T0 + 2 * H - 1, (T0 + 5,)), "http") == 0  # not planned
    assert led.give_up(closing, "retcode") == H
    assert (led.counters(), led.settled_until()) == (tok(5), T0 + H - 1)  # kept, closed
    nxt = led.plan(T0 + 2 * H + 600)[0]
    assert led.give_up(nxt, "retcode") == H
    assert led.given_up == {"retcode": 2 * H}


def audits(led: Ledger, now: int) -> list[Read]:
    return [r for r in led.plan(now) if r.kind == "audit"]


def test_an_audit_given_up_is_dropped_and_the_next_one_follows() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    [audit] = audits(led, T0 + 3 * H)
    assert audit == Read(T0, T0 + H - 1, (T0,), "audit")
    for other in (Read(T0, T0 + 2 * H - 1, (T0, T0 + H), "audit"),  # not what is queued
                  Read(T0, T0 + H - 2, (T0,), "audit")):
        assert led.give_up(other, "retcode") == 0 and audits(led, T0 + 3 * H) == [audit]
    assert led.give_up(audit, "retcode") == 0  # counts nothing, loses no counted second
    assert (led.given_up, led.counters(), audits(led, T0 + 3 * H)) == ({}, tok(5), [])
    led.record(Read(T0 + H, T0 + 2 * H - 1, (T0 + H,)), tok(1), T0 + 3 * H)
    assert audits(led, T0 + 6 * H) == [Read(T0 + H, T0 + 2 * H - 1, (T0 + H,), "audit")]


def test_rebase_counts_settled_stretches_it_folds_as_settled_not_skipped() -> None:
    # The first hour was never read; the second was read and settled but waits for the first.
    led = Ledger(T0, H, 600)
    led.record(Read(T0 + H, T0 + 2 * H - 1, (T0 + H,)), tok(3), T0 + 2 * H + 600)
    led.record(Read(T0 + 2 * H, T0 + 2 * H + 10, (T0 + 2 * H,)), tok(1), T0 + 2 * H + 10)
    assert led.settled_until() == T0 - 1
    now = T0 + 3 * H + DAY
    # Keeping from T0 + 3H: the read third hour ends before it and is folded unsettled.
    assert led.rebase(now, DAY) == 2 * H  # the first and third hours; the second was settled
    assert (led.settled_until(), led.counters(), led.skipped_seconds) == (
        T0 + 3 * H - 1, tok(4), 2 * H)


def test_rebase_at_the_limit_changes_nothing_and_keeps_audits() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    now = T0 + H + DAY  # the cursor stands exactly at now - max_backfill
    assert led.rebase(now, DAY) == 0
    assert led.plan(now)[-1].kind == "audit"  # the closed hour is still audited


def test_rebase_keeps_a_stretch_that_ends_at_the_limit() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H)  # read, not settled
    assert led.rebase(T0 + H - 1 + DAY, DAY) == 0  # keeps from T0 + H - 1: inside the hour
    assert led.settled_until() == T0 - 1 and led.counters() == tok(5)


def test_a_saved_stretch_keeps_its_final_flag_and_a_version_1_one_has_no_read_bound() -> None:
    data = Ledger(T0, H, 600).to_dict()
    data["open"] = [{"start": T0, "end": T0 + H - 1, "totals": {"tokens": 1}, "final": False},
                    {"start": T0 + H, "end": T0 + 2 * H - 1, "totals": {"tokens": 2},
                     "final": True, "read_to": T0 + 2 * H - 1}]
    led = Ledger.from_dict(data)
    assert [(s["final"], s["read_to"]) for s in led.to_dict()["open"]] == [
        (False, T0 - 1), (True, T0 + 2 * H - 1)]


def test_a_read_sent_exactly_at_end_plus_settle_is_final() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H - 1 + 599)
    assert led.settled_until() == T0 - 1
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H - 1 + 600)
    assert led.settled_until() == T0 + H - 1


def test_revisions_add_up() -> None:
    led = Ledger(T0, H, 600)
    for reading in (10, 7, 4):
        led.record(Read(T0, T0 + 100, (T0,)), tok(reading), T0 + 100)
    # Lowered by 10 - 7, then by 10 - 4: the highest reading is kept.
    assert (led.revisions, led.revised_away, led.counters()) == (2, tok(3 + 6), tok(10))


def test_a_one_second_period_is_allowed() -> None:
    assert Ledger(T0, 1, 0).plan(T0 + 1) == [Read(T0, T0 + 1, (T0, T0 + 1))]


def test_given_up_seconds_survive_a_round_trip_and_old_files_have_none() -> None:
    led = Ledger(T0, H, 600)
    led.given_up = {"retcode": 3600}
    assert Ledger.from_dict(led.to_dict()).given_up == {"retcode": 3600}
    data = led.to_dict()
    del data["given_up"]
    assert Ledger.from_dict(data).given_up == {}


def saved(**changes: object) -> dict[str, object]:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    return {**led.to_dict(), **changes}


@pytest.mark.parametrize(("data", "error", "message"), [
    (saved(cursor=T0 - 1), ValueError, "cursor before origin"),
    (saved(given_up=[1]), TypeError, "given_up must be an object"),
    (saved(given_up={"x": "1"}), TypeError, "expected an integer, got str"),
    (saved(origin=True), TypeError, "expected an integer, got bool"),
    (saved(origin=2**62), ValueError, f"integer out of range: {2**62}"),
    (saved(origin=-(2**62)), ValueError, f"integer out of range: {-(2**62)}"),
    (saved(closed=[]), TypeError, "totals must be an object, got list"),
    (saved(closed={"tokens": -1}), ValueError, "totals must not be negative: {'tokens': -1}"),
    (saved(audits=[{"start": T0, "end": T0 + H, "totals": {}, "final": True}]), ValueError,
     f"audit stretch at {T0} is not closed time in order"),
    (saved(audits=[{"start": T0, "end": T0 + 9, "totals": {}, "final": True},
                   {"start": T0 + 9, "end": T0 + 19, "totals": {}, "final": True}]),
     ValueError, f"audit stretch at {T0 + 9} is not closed time in order"),
    (saved(open=[{"start": T0 + H, "end": T0 + H + 9, "totals": {}, "final": False,
                  "read_to": T0 + H - 2}]), ValueError,
     f"stretch at {T0 + H}: read_to {T0 + H - 2} before its start"),
    (saved(open=[{"start": T0 + H, "end": T0 + H + 9, "totals": {}, "final": False},
                 {"start": T0 + H + 9, "end": T0 + H + 19, "totals": {}, "final": False}]),
     ValueError, f"open stretch at {T0 + H + 9} overlaps closed or open time"),
])
def test_a_damaged_saved_ledger_says_what_is_wrong(data: dict[str, Any], error: type[Exception],
                                                   message: str) -> None:
    with pytest.raises(error) as caught:
        Ledger.from_dict(data)
    assert str(caught.value) == message


def test_the_widest_sane_integers_load() -> None:
    led = Ledger.from_dict(saved(closed={"tokens": 2**62 - 1}))
    assert led.settled_totals().tokens == 2**62 - 1


def test_a_ledger_that_began_before_the_origin_keeps_counting_from_there() -> None:
    led = Ledger(T0, H, 600)
    (read,) = led.plan(T0 + 100)
    led.record(read, tok(5), T0 + 100)
    assert not led.begin_at(T0 + H)  # a later origin would lower its counters
    assert (led.origin, led.counters()) == (T0, tok(5))


def test_keep_counts_takes_the_larger_of_each_problem_count() -> None:
    mine, theirs = Ledger(T0, H, 600), Ledger(T0, H, 600)
    mine.late_after_settle, theirs.late_after_settle = tok(500), tok(20)
    mine.revisions, theirs.revisions = 1, 4
    mine.given_up, theirs.given_up = {"throttled": 60, "rejected": 5}, {"rejected": 9}
    mine.skipped_seconds, mine.additivity_errors, mine.additivity_excess = 30, 2, tok(3)
    theirs.keep_counts(mine)
    assert (theirs.late_after_settle, theirs.revisions, theirs.given_up) == (
        tok(500), 4, {"rejected": 9, "throttled": 60})
    assert (theirs.skipped_seconds, theirs.additivity_errors, theirs.additivity_excess) == (
        30, 2, tok(3))


# --- Edges the fast tests pin one by one (mutation survivors, #33) ---

def test_retune_widens_each_open_stretch_on_a_new_line_up_to_the_next_read_one() -> None:
    led = Ledger(T0, H, 0)
    for start in (T0, T0 + 2 * H, T0 + 4 * H, T0 + 6 * H):
        led.record(Read(start, start + 10, (start,)), tok(1), start + 10)
    led.retune(4 * H, 0)  # lines at T0 and T0 + 4 h: those two widen, each up to the next read
    assert led.counters() == tok(4)  # nothing read is lost or counted twice
    assert [(r.start, r.end) for r in led.plan(T0 + 6 * H + 20)] == [
        (T0, T0 + 2 * H - 1), (T0 + 2 * H, T0 + 3 * H - 1), (T0 + 3 * H, T0 + 4 * H - 1),
        (T0 + 4 * H, T0 + 6 * H - 1), (T0 + 6 * H, T0 + 6 * H + 20)]


def test_retune_keeps_a_settled_stretch_whole_and_widens_the_open_ones_after_it() -> None:
    led = Ledger(T0, H, 0)
    # Hour 2 is settled but waits for hours 0 and 1; hour 4 is read in part.
    led.record(Read(T0 + 2 * H, T0 + 3 * H - 1, (T0 + 2 * H,)), tok(2), T0 + 3 * H)
    led.record(Read(T0 + 4 * H, T0 + 4 * H + 10, (T0 + 4 * H,)), tok(1), T0 + 4 * H + 10)
    led.retune(2 * H, 0)
    assert [(r.start, r.end) for r in led.plan(T0 + 5 * H + 20)] == [
        (T0, T0 + 2 * H - 1), (T0 + 3 * H, T0 + 4 * H - 1), (T0 + 4 * H, T0 + 5 * H + 20)]


def test_read_frontier_passes_stretches_read_whole_and_stops_where_reading_stopped() -> None:
    led = Ledger(T0, H, 600)
    assert led.read_frontier() == T0
    led.record(Read(T0, T0 + 100, (T0,)), tok(1), T0 + 100)
    assert led.read_frontier() == T0 + 101
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(2), T0 + H + 5)  # read whole, still open
    assert led.read_frontier() == T0 + H
    led.record(Read(T0 + H, T0 + H + 5, (T0 + H,)), tok(0), T0 + H + 5)
    assert led.read_frontier() == T0 + H + 6
    led.record(Read(T0 + 3 * H, T0 + 3 * H + 5, (T0 + 3 * H,)), tok(0), T0 + 3 * H + 5)
    led.record(Read(T0 + H, T0 + 2 * H - 1, (T0 + H,)), tok(0), T0 + 2 * H + 5)
    assert led.read_frontier() == T0 + 2 * H  # hour 2 was never read: the gap comes first


def test_read_frontier_passes_what_was_counted_before_an_earlier_origin() -> None:
    led = Ledger(T0 + H, H, 600)
    led.record(Read(T0 + H, T0 + 2 * H - 1, (T0 + H,)), tok(5), T0 + 2 * H + 600)  # closed
    assert led.begin_at(T0)  # its closed hour becomes one stretch read before, kept open
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(1), T0 + H)  # read whole, not settled yet
    assert led.read_frontier() == T0 + 2 * H  # the counted hour is covered: read on after it


def test_a_current_read_given_up_gives_up_its_whole_stretch_and_survives_a_restart() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 100, (T0,)), tok(3), T0 + 100)  # hour 0 open: nothing closes
    current = led.plan(T0 + H + 50)[-1]
    assert current == Read(T0 + H, T0 + H + 50, (T0 + H,))
    assert led.give_up(current, "http") == H  # the rest of the hour is not read apart
    saved = led.to_dict()["open"][-1]
    assert (saved["start"], saved["end"], saved["final"], saved["read_to"]) == (
        T0 + H, T0 + 2 * H - 1, True, T0 + H - 1)  # never read: its one read was rejected
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert [(r.start, r.end) for r in restored.plan(T0 + 2 * H + 10)] == [
        (T0, T0 + H - 1), (T0 + 2 * H, T0 + 2 * H + 10)]


def test_rebase_stops_at_a_recent_stretch_and_adds_to_earlier_skips() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + 100, (T0,)), tok(1), T0 + 100)  # old, never settled
    now = T0 + 3 * DAY
    led.record(Read(now - H, now - H + 10, (now - H,)), tok(2), now - H + 10)  # recent
    # Up to the day kept: the old hour's reading is kept, its unsettled time skipped.
    assert led.rebase(now, DAY) == 2 * DAY
    assert (led.settled_until(), led.counters()) == (now - DAY - 1, tok(3))
    assert led.to_dict()["audits"] == []
    led.record(Read(now - H, now - 1, (now - H,)), tok(2), now + 600)  # settled, not closed:
    assert led.settled_until() == now - DAY - 1  # the unread day before it comes first
    assert led.rebase(now + 5 * DAY, DAY) == 5 * DAY - H  # its settled hour is not skipped
    assert led.skipped_seconds == 2 * DAY + 5 * DAY - H  # summed over restarts


def test_rebase_keeps_a_stretch_of_an_older_grid_that_ends_on_the_limit() -> None:
    led = Ledger(T0 + 1, H, 600, offset=1)  # an API whose hours began a second later
    led.record(Read(T0 + 1, T0 + 100, (T0 + 1,)), tok(1), T0 + 100)
    led.retune(H, 600)  # its stretch [T0 + 1, T0 + H] now ends on a line
    assert led.rebase(T0 + H + DAY, DAY) == 0  # keeps from T0 + H: inside the read stretch
    assert led.plan(T0 + H + DAY)[0].start == T0 + 1


def test_keep_counts_keeps_revised_away_and_a_reason_given_up_for_no_seconds() -> None:
    mine, theirs = Ledger(T0, H, 600), Ledger(T0, H, 600)
    mine.revised_away, theirs.revised_away = tok(7), tok(2)
    mine.given_up = {"timeout": 0}
    theirs.keep_counts(mine)
    assert (theirs.revised_away, theirs.given_up) == (tok(7), {"timeout": 0})


def test_counts_from_only_an_origin_it_begins_at_without_a_baseline() -> None:
    assert Ledger(T0, H, 600).counts_from(T0)
    assert not Ledger(T0, H, 600).counts_from(T0 - H)
    fresh = Ledger(T0, H, 600, fresh=True)
    assert not fresh.counts_from(T0)  # its first reading will be left out
    (read,) = fresh.plan(T0 + 100)
    fresh.record(read, tok(4), T0 + 100)
    assert not fresh.fresh and not fresh.counts_from(T0)  # it was: 4 tokens as a baseline


def test_begin_at_its_own_day_counts_the_baseline_it_left_out() -> None:
    led = Ledger(T0, H, 600, fresh=True)
    (read,) = led.plan(T0 + 100)
    led.record(read, tok(4), T0 + 100)
    assert led.counters() == ZERO
    assert led.begin_at(T0)  # the same origin, but not counting from it
    assert (led.counters(), led.counts_from(T0)) == (tok(4), True)
    assert not led.begin_at(T0)  # once


def test_begin_at_an_earlier_origin_keeps_an_open_reading_when_nothing_closed() -> None:
    led = Ledger(T0 + H, H, 600)
    led.record(Read(T0 + H, T0 + H + 100, (T0 + H,)), tok(3), T0 + H + 100)
    assert led.begin_at(T0)
    assert led.counters() == tok(3)
    assert [(r.start, r.end) for r in led.plan(T0 + H + 200)] == [
        (T0, T0 + H - 1), (T0 + H, T0 + H + 200)]


def test_begin_at_an_earlier_origin_keeps_what_was_counted_as_one_stretch_read_before() -> None:
    led = Ledger(T0 + H, H, 600, fresh=True, audit=True)
    (first,) = led.plan(T0 + H + 100)
    led.record(first, tok(4), T0 + H + 100)  # the baseline: 4
    for hour in (1, 2):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(10), start + H + 600)
    assert (led.counters(), led.settled_until()) == (tok(16), T0 + 3 * H - 1)
    assert led.begin_at(T0)
    assert (led.origin, led.fresh, led.began) == (T0, False, None)
    assert led.counters() == tok(20)  # the baseline is counted now too
    assert led.settled_until() == T0 - 1  # the hour before is read like any catch-up
    data = led.to_dict()
    assert (data["open"], data["audits"]) == ([{
        "start": T0 + H, "end": T0 + 3 * H - 1, "totals": tok(20).as_dict(), "final": True,
        "read_to": T0 + H - 1}], [])  # never read as one: not read again, not audited
    assert [(r.start, r.end) for r in led.plan(T0 + 3 * H + 700)] == [
        (T0, T0 + H - 1), (T0 + 3 * H, T0 + 3 * H + 700)]


def test_what_was_counted_before_an_earlier_origin_may_span_days_and_reloads() -> None:
    led = Ledger(T0 + DAY, H, 0)
    for start in range(T0 + DAY, T0 + 3 * DAY, H):
        led.record(Read(start, start + H - 1, (start,)), tok(1), start + H)
    assert led.begin_at(T0)
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert restored.counters() == tok(48)
    assert restored.to_dict() == led.to_dict()


@pytest.mark.parametrize(("start", "end", "read_to", "ok"), [
    (T0, T0 + 2 * DAY, T0 - 1, True),  # counted before an earlier origin, never read as one
    (T0, T0 + 2 * DAY, T0 + 2 * DAY, False),  # read as one: at most a day
    (-(2**61), 2**61 - 1, -(2**61) - 1, True),
    (-(2**61), 2**61, -(2**61) - 1, False),  # 2**62 seconds: damage
])
def test_a_saved_settled_stretch_is_bounded_by_how_it_was_read(start: int, end: int,
                                                               read_to: int, ok: bool) -> None:
    data = {**Ledger(start, H, 0).to_dict(),
            "open": [{"start": start, "end": end, "totals": {"tokens": 1}, "final": True,
                      "read_to": read_to}]}
    if ok:
        assert Ledger.from_dict(data).counters() == Totals(tokens=1)
    else:
        with pytest.raises(ValueError, match=r"is empty or longer than a day"):
            Ledger.from_dict(data)


def test_a_ledger_saved_before_grids_of_days_loads_on_its_fixed_grid() -> None:
    data = Ledger(T0 + 1800, H, 600, offset=1800).to_dict()
    del data["grid"]
    data.update(period=H, offset=1800)
    led = Ledger.from_dict(data)
    assert led.grid == Grid.every(H, 1800)
    assert [(r.start, r.end) for r in led.plan(T0 + 2 * H)] == [
        (T0 + 1800, T0 + H + 1799), (T0 + H + 1800, T0 + 2 * H)]
    del data["offset"]  # older still: hours from zero
    assert Ledger.from_dict({**data, "origin": T0, "cursor": T0}).grid == Grid.every(H)


def test_a_fresh_ledger_and_when_it_began_survive_a_restart() -> None:
    led = Ledger(T0, H, 600, fresh=True)
    assert Ledger.from_dict(json.loads(json.dumps(led.to_dict()))).fresh  # still to begin
    (read,) = led.plan(T0 + 100)
    led.record(read, tok(4), T0 + 90)
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    assert (restored.fresh, restored.began, restored.baseline) == (False, T0 + 90, tok(4))


def test_a_ledger_saved_before_baselines_and_additivity_loads_without_them() -> None:
    data = Ledger(T0, H, 600).to_dict()
    for key in ("fresh", "baseline", "began", "additivity_errors", "additivity_excess"):
        del data[key]
    led = Ledger.from_dict(data)
    assert (led.fresh, led.baseline, led.began) == (False, ZERO, None)
    assert (led.additivity_errors, led.additivity_excess) == (0, ZERO)


def test_queued_audits_survive_a_restart() -> None:
    led = Ledger(T0, H, 600, audit=True)
    for hour in (0, 1):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(5), start + H + 600)
    assert len(led.to_dict()["audits"]) == 2  # two contiguous closed hours wait
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))
    now = T0 + 2 * H + 1200 + H
    assert restored.plan(now) == led.plan(now)
    assert restored.plan(now)[-1] == Read(T0, T0 + 2 * H - 1, (T0, T0 + H), "audit")


def test_a_saved_open_stretch_at_the_origin_must_not_read_below_the_baseline() -> None:
    data = {**Ledger(T0, H, 600).to_dict(), "baseline": {"tokens": 5},
            "open": [{"start": T0, "end": T0 + H - 1, "totals": {"tokens": 1}, "final": False,
                      "read_to": T0 + 10}]}
    with pytest.raises(ValueError, match=rf"^open stretch at {T0} reads below the baseline$"):
        Ledger.from_dict(data)
    data["open"][0]["start"] = T0 + 1  # elsewhere, a reading is only its own
    assert Ledger.from_dict(data).counters() == Totals(tokens=1)


def test_an_audit_for_stretches_not_queued_is_ignored() -> None:
    led = Ledger(T0, H, 600, audit=True)
    assert not led.record(Read(T0, T0 + H - 1, (), "audit"), tok(9), T0 + H)  # nothing queued
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    stale = led.record(Read(T0 + 10, T0 + H - 1, (T0 + 10,), "audit"), tok(9), T0 + 3 * H)
    assert stale.applied is False
    assert (led.late_after_settle, len(led.to_dict()["audits"])) == (ZERO, 1)


def test_additivity_errors_add_up() -> None:
    led = Ledger(T0, H, 0, audit=True)
    for hour in range(4):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(10), start + H)
    for read in (Read(T0, T0 + H - 1, (T0,), "audit"),
                 Read(T0 + H, T0 + H * 2 - 1, (T0 + H,), "audit")):
        assert led.record(read, tok(7), T0 + 6 * H).shortfall == tok(3)
    assert (led.additivity_errors, led.additivity_excess) == (2, tok(6))


def test_a_catch_up_keeps_the_current_read_of_a_stretch_of_an_older_grid() -> None:
    led = Ledger(T0, 2 * H, 600)
    led.record(Read(T0 + 5 * DAY, T0 + 5 * DAY + 10, (T0 + 5 * DAY,)), tok(1),
               T0 + 5 * DAY + 10)
    led.retune(H, 600)  # the two-hour stretch already read stays whole
    now = T0 + 5 * DAY + H + 100
    assert led.plan(now, max_reads=3)[-1] == Read(T0 + 5 * DAY, now, (T0 + 5 * DAY,))


def test_a_catch_up_keeps_the_newest_read_only_while_it_is_not_closing() -> None:
    # Read on a grid of hours from the half hour, and then on hours again: a stretch starting
    # inside the current hour was read already.
    led = Ledger(T0, H, 0)
    led.retune(H, 0, offset=1800)
    later = T0 + 5 * DAY + 1800
    led.record(Read(later, later + 10, (later,)), tok(1), later + 10)
    led.retune(H, 0)
    # At its start: that stretch, never read less far than before.
    assert led.plan(later, max_reads=3)[-1] == Read(later, later + 10, (later,))
    current = led.plan(later - 2, max_reads=3)
    assert current[-1] == Read(T0 + 5 * DAY, later - 2, (T0 + 5 * DAY,))
    closing = led.plan(later - 1, max_reads=3)  # [day 5, later - 1] closes now: read as old
    assert [(r.start, r.end) for r in closing] == [
        (T0, T0 + DAY - 1), (T0 + DAY, T0 + 2 * DAY - 1), (T0 + 2 * DAY, T0 + 3 * DAY - 1)]


def test_a_catch_up_keeps_the_current_hour_until_it_closes() -> None:
    led = Ledger(T0, H, 600)
    now = T0 + 5 * DAY + H - 100  # the current hour ends in 100 s, settles 600 s later
    assert led.plan(now, max_reads=3)[-1] == Read(T0 + 5 * DAY, now, (T0 + 5 * DAY,))


def test_a_catch_up_reads_the_current_hour_from_its_start_after_the_hour_before() -> None:
    led = Ledger(T0, H, 600)
    before = T0 + 5 * DAY - H
    led.record(Read(before, before + 10, (before,)), tok(1), before + 10)
    now = T0 + 5 * DAY + 100
    assert led.plan(now, max_reads=3)[-1] == Read(T0 + 5 * DAY, now, (T0 + 5 * DAY,))


def test_one_read_a_cycle_is_the_oldest_and_two_keep_the_newest() -> None:
    led = Ledger(T0, H, 600)
    now = T0 + 5 * DAY
    assert led.plan(now, max_reads=1) == [Read(T0, T0 + DAY - 1, tuple(range(T0, T0 + DAY, H)))]
    assert [(r.start, r.end) for r in led.plan(now, max_reads=2)] == [
        (T0, T0 + DAY - 1), (now, now)]


def test_one_read_a_cycle_leaves_a_due_audit_for_later() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)  # closed, then an outage
    reads = led.plan(T0 + 5 * DAY, max_reads=1)
    assert [(r.kind, r.start) for r in reads] == [("count", T0 + H)]


def test_a_shorter_read_after_a_clock_stepped_back_lowers_nothing() -> None:
    led = Ledger(T0, H, 600)
    led.record(Read(T0, T0 + 100, (T0,)), tok(5), T0 + 100)
    led.record(Read(T0, T0 + 50, (T0,)), tok(3), T0 + 50)  # covers less: lower, no revision
    assert (led.revisions, led.counters(), led.read_frontier()) == (0, tok(5), T0 + 101)
    assert led.plan(T0 + 60) == [Read(T0, T0 + 100, (T0,))]  # never less far than before


@pytest.mark.parametrize(("settle", "merged"), [(2 * H, True), (2 * H - 1, False)])
def test_stretches_closing_together_once_due_gather_into_one_audit_run(settle: int,
                                                                      merged: bool) -> None:
    # Settle longer than a period: two hours that close in one poll of a catch-up, both
    # already due for their audit, queue as one run of at most max(settle, period).
    led = Ledger(T0, H, settle, audit=True)
    now = T0 + 6 * H
    for hour in (0, 1):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(10), now)
    audit = led.plan(T0 + 10 * H)[-1]
    assert (audit.kind, audit.start, audit.end) == ("audit", T0, T0 + 2 * H - 1)
    assert audit.stretches == ((T0,) if merged else (T0, T0 + H))
    restored = Ledger.from_dict(json.loads(json.dumps(led.to_dict())))  # and after a restart
    assert restored.plan(T0 + 10 * H)[-1] == audit
    recorded = led.record(audit, tok(15), T0 + 10 * H)
    assert (recorded.applied, recorded.shortfall) == (True, tok(5))
    assert led.to_dict()["audits"] == []


def test_a_read_starting_before_the_stretches_it_names_is_not_applied() -> None:
    led = Ledger(T0, H, 600)
    assert not led.record(Read(T0 + 10, T0 + H + 5, (T0 + H,)), tok(5), T0 + H + 5)
    assert led.counters() == ZERO


def test_audits_switched_off_leave_those_queued_unread() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    led.audit = False  # a reload turned audits off (state.retarget)
    assert all(r.kind == "count" for r in led.plan(T0 + 5 * H))


def test_a_closed_neighbour_due_this_very_second_joins_the_audit() -> None:
    led = Ledger(T0, H, 600, audit=True)
    for hour in (0, 1):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(5), start + H + 600)
    # Hour 0 is ready (due, and waited an hour more) exactly when hour 1 becomes due.
    now = T0 + 2 * H - 1 + 2 * 600
    assert led.plan(now)[-1] == Read(T0, T0 + 2 * H - 1, (T0, T0 + H), "audit")


def test_a_catch_up_keeps_the_current_read_of_an_older_stretch_ending_on_a_line() -> None:
    led = Ledger(T0, H, 600)
    led.retune(H, 600, offset=1)  # hours from a second past each hour, for a while
    older = T0 + 5 * DAY - H + 1
    led.record(Read(older, older + 10, (older,)), tok(1), older + 10)
    led.retune(H, 600)  # hours again: that stretch ends exactly on this hour's line
    now = T0 + 5 * DAY + 100
    assert led.plan(now, max_reads=3)[-1] == Read(older, T0 + 5 * DAY, (older,))


def test_a_settled_copy_holds_the_closed_prefix_and_the_counts_only() -> None:
    led = Ledger(T0, H, 600, audit=True)
    for hour in (0, 1):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(5), start + H + 600)
    led.record(Read(T0 + 2 * H, T0 + 2 * H + 10, (T0 + 2 * H,)), tok(3), T0 + 2 * H + 10)
    led.revisions = 2
    copy = led.settled().to_dict()
    assert (copy["open"], copy["audits"], copy["audit"]) == ([], [], False)
    assert (copy["closed"], copy["cursor"], copy["revisions"]) == (tok(10).as_dict(), T0 + 2 * H, 2)
    assert led.to_dict()["audits"] != []  # the ledger itself keeps its own


@pytest.mark.parametrize(("max_reads", "newest"), [(2, False), (3, True)], ids=["two", "three"])
def test_a_due_audit_keeps_its_own_slot_in_a_paced_catch_up(max_reads: int,
                                                            newest: bool) -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)  # closed, then an outage
    now = T0 + 5 * DAY
    reads = led.plan(now, max_reads=max_reads)
    # The oldest backlog first, the current hour when there is room, and the audit always.
    assert [(r.kind, r.start, r.end) for r in reads] == [
        ("count", T0 + H, T0 + DAY + H - 1), *([("count", now, now)] if newest else []),
        ("audit", T0, T0 + H - 1)]


def test_a_neighbour_closed_later_waits_for_its_own_audit() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    now = T0 + 3 * H + 600  # hours 1 and 2 were not read (an outage): caught up as one now
    caught_up = led.plan(now)[0]
    assert (caught_up.kind, caught_up.stretches) == ("count", (T0 + H, T0 + 2 * H))
    led.record(caught_up, tok(7), now)  # settles them
    # Hour 0 has waited long enough; hours 1 and 2 closed just now, and late usage may still
    # arrive for them: the audit reads hour 0 alone.
    audit = led.plan(now)[-1]
    assert audit == Read(T0, T0 + H - 1, (T0,), "audit")
    led.record(audit, tok(5), now)
    assert all(r.kind == "count" for r in led.plan(T0 + 4 * H + 1198))
    assert led.plan(T0 + 4 * H + 1199)[-1] == Read(T0 + H, T0 + 3 * H - 1, (T0 + H,), "audit")


def test_an_audit_never_reads_across_a_stretch_given_up() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + H - 1, (T0,)), tok(5), T0 + H + 600)
    assert led.give_up(Read(T0 + H, T0 + 2 * H - 1, (T0 + H,)), "rejected") == H
    led.record(Read(T0 + 2 * H, T0 + 3 * H - 1, (T0 + 2 * H,)), tok(6), T0 + 3 * H + 600)
    now = T0 + 10 * H  # both read hours are ready: one audit each, never the hour between
    audit = led.plan(now)[-1]
    assert audit == Read(T0, T0 + H - 1, (T0,), "audit")
    led.record(audit, tok(5), now)
    assert led.plan(now)[-1] == Read(T0 + 2 * H, T0 + 3 * H - 1, (T0 + 2 * H,), "audit")


def test_an_audit_run_reads_no_more_than_a_day() -> None:
    first = T0 + H - 1  # a one-second first period, then whole hours, each audited on its own
    led = Ledger(first, H, 600, audit=True)
    led.record(Read(first, first, (first,)), tok(1), first + 600)
    for hour in range(1, 26):
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(1), start + H + 600)
    (audit,) = [r for r in led.plan(T0 + 2 * DAY) if r.kind == "audit"]
    # Hour 24 would make the run a day and a second long: it starts the next run.
    assert (audit.start, audit.end) == (first, T0 + DAY - 1)
    assert audit.stretches == (first, *range(T0 + H, T0 + DAY, H))
    led.record(audit, tok(24), T0 + 2 * DAY)
    (audit,) = [r for r in led.plan(T0 + 2 * DAY) if r.kind == "audit"]
    assert (audit.start, audit.end) == (T0 + DAY, T0 + DAY + 2 * H - 1)


def test_a_settle_of_days_still_audits_at_most_a_day_a_read() -> None:
    # Runs gather neighbours closing once due for max(settle, period): with a settle of four
    # days, a catch-up of hours would make one run of days, read in one call.
    settle = 4 * DAY
    led = Ledger(T0, H, settle, audit=True)
    for hour in range(40):  # each closes already due, while the run before it is not ready
        start = T0 + hour * H
        led.record(Read(start, start + H - 1, (start,)), tok(1), start + H + 2 * settle)
    audited: list[Read] = []
    now = T0 + 40 * H + 3 * settle
    while audits := [r for r in led.plan(now) if r.kind == "audit"]:
        audited += audits
        for audit in audits:
            led.record(audit, tok(len(audit.stretches)), now)
    assert [(a.start, a.end) for a in audited] == [(T0, T0 + DAY - 1),
                                                   (T0 + DAY, T0 + 40 * H - 1)]


def test_a_stretch_given_up_behind_an_open_one_is_never_audited() -> None:
    led = Ledger(T0, H, 600, audit=True)
    led.record(Read(T0, T0 + 100, (T0,)), tok(1), T0 + 100)
    now = T0 + 2 * H + 600  # hours 0 and 1 settle: hour 0 read again, hour 1 read first
    old, rejected = led.plan(now)[:2]
    assert (old.start, rejected.start, rejected.end) == (T0, T0 + H, T0 + 2 * H - 1)
    assert led.give_up(rejected, "rejected") == H  # the API keeps rejecting hour 1
    led.record(old, tok(2), now)  # hour 0 settles, and hour 1 closes behind it
    assert (led.settled_until(), led.counters()) == (T0 + 2 * H - 1, tok(2))
    # Hour 1 was never read: an audit of it would be rejected again, and for ever.
    audit = led.plan(T0 + 6 * H)[-1]
    assert audit == Read(T0, T0 + H - 1, (T0,), "audit")
    led.record(audit, tok(2), T0 + 6 * H)
    assert all(r.kind == "count" for r in led.plan(T0 + 8 * H))
