"""The simulated API's time buckets: where each starts, in a fixed offset or a real time zone,
and which event timestamps a range counts in each range mode."""

import re

import pytest

from exporter.simulator.buckets import BucketPolicy

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
MINUTE = 1_699_999_980  # 22:13:00 UTC
# Europe/Berlin midnights, hand-checked: 2026-03-29 is 23 hours long (clocks go forward at
# 02:00), 2026-10-25 is 25 hours long (back at 03:00).
MARCH_29 = 1_774_738_800  # 2026-03-28 23:00 UTC
MARCH_30 = 1_774_821_600  # 2026-03-29 22:00 UTC
OCTOBER_25 = 1_792_879_200  # 2026-10-24 22:00 UTC
OCTOBER_26 = 1_792_969_200  # 2026-10-25 23:00 UTC


def test_by_default_minute_buckets_in_utc_count_exactly_and_carry_rows() -> None:
    policy = BucketPolicy()
    assert policy.label(T0) == MINUTE
    assert policy.following(MINUTE) == MINUTE + 60
    assert policy.event_range(T0, T0 + 1) == (T0, T0 + 1)
    assert policy.rows


def test_buckets_start_at_the_offset_zones_boundaries() -> None:
    assert BucketPolicy(3600, 900).label(T0) == T0 - 1700  # 22:00 at UTC+0:15 is 21:45 UTC
    assert BucketPolicy(3600, -900).label(T0) == T0 - 3500  # 21:00 at UTC-0:15 is 21:15 UTC
    assert BucketPolicy(1).label(T0) == T0


@pytest.mark.parametrize("offset", [86399, -86399], ids=["east", "west"])
def test_an_offset_just_under_a_day_either_way_is_accepted(offset: int) -> None:
    assert BucketPolicy(86400, offset).utc_offset == offset


def test_zone_days_start_at_local_midnight_and_last_23_or_25_hours() -> None:
    policy = BucketPolicy(86400, mode="outward", zone="Europe/Berlin")
    assert policy.label(MARCH_29) == MARCH_29
    assert policy.label(MARCH_30 - 1) == MARCH_29
    assert policy.following(MARCH_29) == MARCH_30
    assert policy.label(OCTOBER_26 - 1) == OCTOBER_25
    assert policy.following(OCTOBER_25) == OCTOBER_26
    assert policy.event_range(MARCH_29 + 5, MARCH_29 + 5) == (MARCH_29, MARCH_30 - 1)


def test_a_day_far_east_of_utc_ends_at_its_own_next_midnight() -> None:
    # Kiritimati (UTC+14): 2026-01-01 starts at 10:00 UTC on 2025-12-31.
    new_year, january_2 = 1_767_175_200, 1_767_261_600
    policy = BucketPolicy(86400, zone="Pacific/Kiritimati")
    assert policy.label(new_year + 86399) == new_year
    assert policy.following(new_year) == january_2


def test_a_day_of_26_hours_ends_at_the_next_midnight() -> None:
    # Goose Bay, 1988-10-30: double daylight time ended, clocks went back two hours (tzdata).
    october_30, october_31 = 594_180_000, 594_273_600  # 00:00 at UTC-2 and at UTC-4
    policy = BucketPolicy(86400, mode="outward", zone="America/Goose_Bay")
    assert policy.following(october_30 - 86400) == october_30
    assert policy.following(october_30) == october_31
    assert policy.label(october_31 - 1) == october_30
    assert policy.event_range(october_30 + 5, october_30 + 5) == (october_30, october_31 - 1)


def test_a_day_whose_midnight_never_came_starts_when_its_midnight_would_have() -> None:
    # Toronto, 1919-03-31: clocks went from 23:30 EST straight to 00:30 EDT (tzdata). The half
    # hour before 01:00 EDT (00:00 EST) stays in the day before; no bucket starts after its ts.
    march_30, march_31 = -1_601_838_000, -1_601_751_600  # 00:00 EST each (05:00 UTC)
    policy = BucketPolicy(86400, zone="America/Toronto")
    assert policy.label(march_31 - 1) == march_30  # 00:59:59 EDT on the 31st
    assert policy.label(march_31 - 1800) == march_30  # 00:30:00 EDT, the first second
    assert policy.label(march_31) == march_31
    assert policy.following(march_30) == march_31


def test_buckets_mode_counts_a_range_from_the_bucket_it_starts_on() -> None:
    policy = BucketPolicy(60, mode="buckets")
    assert policy.event_range(MINUTE, MINUTE + 60) == (MINUTE, MINUTE + 119)
    assert policy.event_range(MINUTE + 1, MINUTE + 60) == (MINUTE + 60, MINUTE + 119)
    assert policy.event_range(MINUTE + 1, MINUTE + 59) == (MINUTE + 60, MINUTE + 59)  # empty


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seconds": 0}, "bucket must be at least 1 second, got 0"),
    ({"utc_offset": 86400}, "bucket UTC offset must be within a day, got 86400"),
    ({"utc_offset": -86400}, "bucket UTC offset must be within a day, got -86400"),
    ({"mode": "inward"}, "range mode must be one of exact, buckets, outward, got 'inward'"),
    ({"zone": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
    ({"zone": "../etc"}, "unknown time zone '../etc'"),
], ids=["no-seconds", "offset-day-east", "offset-day-west", "mode", "zone", "zone-path"])
def test_a_bad_policy_is_refused_saying_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BucketPolicy(**kwargs)  # type: ignore[arg-type]
