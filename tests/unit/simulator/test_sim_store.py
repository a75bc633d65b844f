"""The simulator's event store: inclusive windows, visibility, Usages rows."""

import dataclasses
import random

import pytest

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.store import ROW_TYPES, Event, EventStore
from exporter.simulator.usage import Usage

USAGE_FIELDS = [f.name for f in dataclasses.fields(Usage)]

T0 = 1_700_000_000


def usage(inp: int, out: int, requests: int = 1, images: int = 0) -> Usage:
    return Usage(inp, out, inp + out, requests, images)


def ev(ts: int, totals: Usage, visible: float | None = None, model: str = "m") -> Event:
    return Event(ts, float(ts) if visible is None else visible, "p", "k", model, totals)


def test_window_is_inclusive_at_both_ends() -> None:
    store = EventStore()
    store.add_many([ev(T0, usage(1, 1)), ev(T0 + 10, usage(2, 2)), ev(T0 + 11, usage(4, 4))])
    at = T0 + 100
    assert store.query("p", "k", "m", T0, T0 + 10, at) == usage(3, 3, 2)
    assert store.query("p", "k", "m", T0 + 1, T0 + 9, at) == Usage()
    assert store.query("p", "k", "m", T0 + 10, T0 + 10, at) == usage(2, 2)


def test_adjacent_windows_add_up() -> None:
    rng = random.Random(7)
    store = EventStore()
    store.add_many(ev(T0 + rng.randrange(1000), usage(rng.randrange(500), 3)) for _ in range(300))
    a, c, at = T0, T0 + 999, T0 + 2000
    whole = store.query("p", "k", "m", a, c, at)
    for b in (a, a + 1, a + 500, c - 1):
        left = store.query("p", "k", "m", a, b, at)
        right = store.query("p", "k", "m", b + 1, c, at)
        assert left + right == whole
    assert whole.requests == 300


def test_late_events_are_invisible_until_visible_at() -> None:
    store = EventStore()
    store.add(ev(T0, usage(5, 5), visible=T0 + 30.5))
    assert store.query("p", "k", "m", T0, T0, T0 + 30) == Usage()
    assert store.query("p", "k", "m", T0, T0, T0 + 30.5) == usage(5, 5)
    assert store.truth("p", "k", "m", T0, T0) == usage(5, 5)


def test_out_of_order_inserts_stay_sorted() -> None:
    store = EventStore()
    for ts in (T0 + 50, T0 + 10, T0 + 30, T0 + 10):
        store.add(ev(ts, usage(ts - T0, 0)))
    assert store.query("p", "k", "m", T0 + 10, T0 + 10, T0 + 99).input_tokens == 20
    assert store.query("p", "k", "m", T0 + 11, T0 + 49, T0 + 99).input_tokens == 30
    assert len(store) == 4


def test_rows_are_bucketed_and_consistent_with_totals() -> None:
    store = EventStore()
    store.add_many([ev(T0 + 5, usage(10, 1)), ev(T0 + 65, usage(20, 2, images=1))])
    store.add(ev(T0 + 70, usage(40, 4), visible=T0 + 10_000))
    rows = store.rows("p", "k", "m", T0, T0 + 119, T0 + 100, BucketPolicy(60))
    first, second = T0 - T0 % 60, T0 + 65 - (T0 + 65) % 60
    assert ("in", 10, first, "m") in rows
    assert ("total", 22, second, "m") in rows
    assert ("image_generation", 1, second, "m") in rows
    assert not [r for r in rows if r[0] == "image_generation" and r[2] == first]
    totals = store.query("p", "k", "m", T0, T0 + 119, T0 + 100)
    for field, kind in zip(USAGE_FIELDS, ROW_TYPES, strict=True):
        assert sum(r[1] for r in rows if r[0] == kind) == getattr(totals, field)


def test_targets_are_separate_and_models_listed() -> None:
    store = EventStore()
    store.add_many([ev(T0, usage(1, 0), model="a"), ev(T0, usage(2, 0), model="b")])
    assert store.query("p", "k", "a", T0, T0, T0).input_tokens == 1
    assert store.query("p", "other", "a", T0, T0, T0) == Usage()
    assert store.models("p", "k") == ["a", "b"]
    assert store.rows("x", "k", "a", T0, T0, T0, BucketPolicy(60)) == []


def test_counts_beyond_int64_are_refused() -> None:
    with pytest.raises(OverflowError):
        EventStore().add(ev(T0, Usage(2**63, 0, 2**63, 1, 0)))


# Hand-computed: T0 = 1_700_000_000 is 2023-11-14 22:13:20 UTC, so the hour began at
# 1_699_999_200 and the UTC+8 day (16:00 UTC) at 1_699_977_600.
HOUR = 1_699_999_200
DAY_UTC8 = 1_699_977_600


def hourly_store() -> EventStore:
    store = EventStore()
    for ts in (HOUR + 10, HOUR + 600, HOUR + 1800, HOUR + 3600 + 5):
        store.add(ev(ts, usage(1, 0)))
    return store


@pytest.mark.parametrize(("mode", "window", "want"), [
    # exact: the events inside the window, whatever the buckets
    ("exact", (HOUR + 500, HOUR + 1799), 1),
    ("exact", (HOUR + 500, HOUR + 3605), 3),
    # buckets: whole buckets whose label lies inside; HOUR + 500 does not hold a label
    ("buckets", (HOUR + 500, HOUR + 1799), 0),
    ("buckets", (HOUR, HOUR + 59), 3),
    ("buckets", (HOUR + 500, HOUR + 3600), 1),
    # outward: every bucket the window touches
    ("outward", (HOUR + 500, HOUR + 559), 3),
    ("outward", (HOUR + 3599, HOUR + 3600), 4),
])
def test_window_modes_count_hand_computed_events(mode: str, window: tuple[int, int],
                                                 want: int) -> None:
    policy = BucketPolicy(3600, 0, mode)  # type: ignore[arg-type]
    store = hourly_store()
    got = store.query("p", "k", "m", *window, float("inf"), policy)
    assert got.requests == want
    rows = store.rows("p", "k", "m", *window, float("inf"), policy)
    assert sum(c for kind, c, _, _ in rows if kind == "request_count") == want
    assert {ts for _, _, ts, _ in rows} <= {HOUR, HOUR + 3600}


def test_daily_buckets_start_at_local_midnight() -> None:
    policy = BucketPolicy(86400, 8 * 3600, "outward")
    assert policy.label(T0) == DAY_UTC8
    assert policy.label(DAY_UTC8 - 1) == DAY_UTC8 - 86400
    assert policy.event_range(T0, T0) == (DAY_UTC8, DAY_UTC8 + 86399)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        BucketPolicy(0)
    with pytest.raises(ValueError, match="within a day"):
        BucketPolicy(60, 86400)
    with pytest.raises(ValueError, match="range mode"):
        BucketPolicy(60, 0, "inward")  # type: ignore[arg-type]


def test_events_before_1970_are_held_like_any_other() -> None:
    # Zone buckets reach back to tzdata's first rules (1919 in test_sim_buckets).
    store = EventStore()
    store.add_many([ev(-1_601_753_200, usage(3, 0)), ev(-5, usage(4, 0))])
    assert store.query("p", "k", "m", -1_601_753_200, 0, 0).input_tokens == 7
    assert store.query("p", "k", "m", -4, 0, 0) == Usage()
