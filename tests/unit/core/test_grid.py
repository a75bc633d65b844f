"""The grid counting cuts time on: a provider's days (daylight saving included) or fixed
periods, each cell's first and last second, its JSON form, and the words of each refusal."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from exporter.core.grid import DAY, LONGEST, Grid, GridError, check_zone

SHANGHAI_MIDNIGHT = 1_700_064_000  # 2023-11-16 00:00 Asia/Shanghai = 2023-11-15 16:00 UTC


def at(zone: str, year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, tzinfo=ZoneInfo(zone)).timestamp())


def test_the_default_grid_is_the_days_of_shanghai() -> None:
    grid = Grid()
    assert (grid.zone, grid.period, grid.offset) == ("Asia/Shanghai", DAY, 0)
    assert at("Asia/Shanghai", 2023, 11, 16) == SHANGHAI_MIDNIGHT
    for t in (SHANGHAI_MIDNIGHT, SHANGHAI_MIDNIGHT + 1, SHANGHAI_MIDNIGHT + DAY - 1):
        assert grid.start(t) == SHANGHAI_MIDNIGHT
        assert grid.end(t) == SHANGHAI_MIDNIGHT + DAY - 1
    assert grid.start(SHANGHAI_MIDNIGHT - 1) == SHANGHAI_MIDNIGHT - DAY
    assert grid.end(SHANGHAI_MIDNIGHT - 1) == SHANGHAI_MIDNIGHT - 1
    assert grid.on_line(SHANGHAI_MIDNIGHT)
    assert not grid.on_line(SHANGHAI_MIDNIGHT + 1)
    assert not grid.on_line(SHANGHAI_MIDNIGHT - 1)
    assert grid.describe() == "days of Asia/Shanghai"


@pytest.mark.parametrize(("day", "hours"), [
    ((2024, 3, 10), 23),   # New York springs forward: a 23-hour day is one cell
    ((2024, 11, 3), 25),   # and falls back: a 25-hour day is one cell
    ((2024, 6, 1), 24),
])
def test_a_day_that_daylight_saving_changes_is_still_one_cell(day: tuple[int, int, int],
                                                              hours: int) -> None:
    grid = Grid("America/New_York")
    start = at("America/New_York", *day)
    assert grid.start(start) == start
    assert grid.start(start + hours * 3600 - 1) == start
    assert grid.end(start) == start + hours * 3600 - 1
    assert grid.start(start + hours * 3600) == start + hours * 3600


def test_a_midnight_that_daylight_saving_skips_starts_at_the_days_first_real_second() -> None:
    # Santiago skips 00:00-01:00 on 2024-09-08: the day begins at 01:00 local time.
    grid = Grid("America/Santiago")
    first = at("America/Santiago", 2024, 9, 8, 1)
    assert grid.start(first) == first
    assert grid.start(first + 3600) == first
    assert grid.start(first - 1) < first - 3600  # the second before belongs to the 7th
    assert grid.end(first - 1) == first - 1


@pytest.mark.parametrize(("period", "offset", "t", "start", "end"), [
    (3600, 0, 7200, 7200, 10799),
    (3600, 0, 7199, 3600, 7199),
    (3600, 600, 7200, 4200, 7799),
    (3600, 600, 4200, 4200, 7799),
    (60, 59, 120, 119, 178),
    (DAY, 0, 100_000, 86_400, 172_799),
])
def test_a_fixed_grid_cuts_every_period_from_its_offset(period: int, offset: int, t: int,
                                                        start: int, end: int) -> None:
    grid = Grid.every(period, offset)
    assert (grid.zone, grid.period, grid.offset) == (None, period, offset)
    assert (grid.start(t), grid.end(t)) == (start, end)
    assert grid.on_line(start) and not grid.on_line(start + 1)
    assert grid.describe() == f"{period} s periods at offset {offset} s"


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Grid("Mars/Olympus"), "unknown time zone 'Mars/Olympus' (an IANA name such as "
                                   "Asia/Shanghai or UTC)"),
    (lambda: Grid("../etc/passwd"), "unknown time zone '../etc/passwd'"),
    (lambda: Grid("UTC", 3600), "a grid of days takes no period or offset"),
    (lambda: Grid("UTC", DAY, 5), "a grid of days takes no period or offset"),
    (lambda: Grid.every(0), "period must divide 86400 seconds (one day), got 0"),
    (lambda: Grid.every(-3600), "period must divide 86400 seconds (one day), got -3600"),
    (lambda: Grid.every(7000), "period must divide 86400 seconds (one day), got 7000"),
    (lambda: Grid.every(3600, 3600), "grid offset must be in [0, period), got 3600"),
    (lambda: Grid.every(3600, -1), "grid offset must be in [0, period), got -1"),
])
def test_each_unusable_grid_is_refused_in_words(make: object, message: str) -> None:
    with pytest.raises(GridError) as refused:
        make()  # type: ignore[operator]
    assert str(refused.value).startswith(message)


def test_grids_that_just_fit_are_taken() -> None:
    assert Grid.every(1).period == 1
    assert Grid.every(DAY, DAY - 1).offset == DAY - 1
    assert Grid.every(3600, 0).offset == 0
    assert Grid("UTC", DAY, 0).zone == "UTC"


@pytest.mark.parametrize("grid", [Grid(), Grid("UTC"), Grid.every(3600), Grid.every(60, 30)])
def test_the_json_form_reads_back_as_the_same_grid(grid: Grid) -> None:
    assert Grid.from_dict(grid.to_dict()) == grid


def test_the_json_forms_are_exactly_these() -> None:
    assert Grid().to_dict() == {"zone": "Asia/Shanghai"}
    assert Grid.every(3600, 600).to_dict() == {"period": 3600, "offset": 600}
    assert Grid.from_dict({"period": 3600}) == Grid.every(3600, 0)  # offset 0 when absent


@pytest.mark.parametrize(("data", "error", "message"), [
    ([], TypeError, "grid must be an object"),
    ({"zone": 5}, GridError, "grid zone must be a time zone name"),
    ({"zone": "A" * 65}, GridError, "grid zone must be a time zone name"),
    ({"zone": "Nowhere/Atlantis"}, GridError, "unknown time zone"),
    ({"period": "3600"}, TypeError, "grid period and offset must be integers"),
    ({"period": True}, TypeError, "grid period and offset must be integers"),
    ({"period": 3600, "offset": 1.5}, TypeError, "grid period and offset must be integers"),
    ({"period": 3600, "offset": False}, TypeError, "grid period and offset must be integers"),
    ({}, TypeError, "grid period and offset must be integers"),
])
def test_a_malformed_json_form_is_refused(data: object, error: type[Exception],
                                          message: str) -> None:
    with pytest.raises(error) as refused:
        Grid.from_dict(data)
    assert str(refused.value).startswith(message)


def test_a_zone_of_64_characters_is_read_as_a_name() -> None:
    with pytest.raises(GridError, match="unknown time zone"):
        Grid.from_dict({"zone": "A" * 64})


def test_check_zone_says_why_a_zone_is_unknown_and_nothing_for_a_known_one() -> None:
    assert check_zone("Europe/Berlin") is None
    assert check_zone("UTC") is None
    assert check_zone("Nowhere/Atlantis") == ("unknown time zone 'Nowhere/Atlantis' (an IANA "
                                             "name such as Asia/Shanghai or UTC)")
    assert check_zone("") is not None


def test_the_seconds_before_a_midnight_that_a_jump_skips_stay_in_the_day_before() -> None:
    # Toronto, 1919-03-30: clocks went from 23:30 EST straight to 00:30 EDT, so the 31st
    # began at 00:30 while its midnight, read as EST, falls at 01:00 EDT, half an hour later
    # (the only such day in tzdata from 1900 to 2037). Those seconds stay in the 30th's cell:
    # no second lies in a cell that begins after it, and the cells still meet.
    zone = ZoneInfo("America/Toronto")
    jump = -1_601_753_400
    assert datetime.datetime.fromtimestamp(jump - 1, zone).isoformat() == (
        "1919-03-30T23:29:59-05:00")
    assert datetime.datetime.fromtimestamp(jump, zone).isoformat() == "1919-03-31T00:30:00-04:00"
    grid = Grid("America/Toronto")
    the_30th, the_31st = at("America/Toronto", 1919, 3, 30), jump + 1800
    for t in (jump - 1, jump, jump + 1, the_31st - 1):
        assert (grid.start(t), grid.end(t)) == (the_30th, the_31st - 1)
    the_1st = at("America/Toronto", 1919, 4, 1)
    assert (grid.start(the_31st), grid.end(the_31st)) == (the_31st, the_1st - 1)  # 23 hours
    assert grid.on_line(the_31st) and not grid.on_line(jump)


@pytest.mark.parametrize(("zone", "day", "hours"), [
    ("Antarctica/Vostok", (1994, 1, 31), 31),  # the longest day in tzdata since 1970
    ("Antarctica/Casey", (2018, 3, 11), 27),  # clocks back three hours, yearly until 2023
    ("America/Goose_Bay", (1988, 10, 30), 26),
    ("Pacific/Apia", (2011, 12, 29), 24),  # the 30th was skipped: the 31st follows
], ids=["vostok-31h", "casey-27h", "goose-bay-26h", "apia-skipped-date"])
def test_a_day_of_any_length_is_one_cell_that_ends_where_the_next_begins(
        zone: str, day: tuple[int, int, int], hours: int) -> None:
    grid = Grid(zone)
    midnight = at(zone, *day)
    following = midnight + hours * 3600
    assert hours * 3600 <= LONGEST  # one read may span it
    for t in (midnight, midnight + 12 * 3600, midnight + 25 * 3600, following - 1):
        if t < following:
            assert (grid.start(t), grid.end(t)) == (midnight, following - 1)
    assert grid.on_line(following) and grid.start(following) == following
    assert datetime.datetime.fromtimestamp(following, ZoneInfo(zone)).time() == datetime.time(0)
