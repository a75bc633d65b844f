"""The simulator's cloud-side spend: a metered key's used amounts are its own usage at its own
list prices (ground truth for reconciling the exporter's cost), per UTC day and month."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from exporter.simulator import Catalog, EventStore, SimKey, SimModel
from exporter.simulator.api import list_keys_data
from exporter.simulator.spend import cost, metered, month_start
from exporter.simulator.store import Event
from exporter.simulator.usage import Usage

NOW = 1_767_312_000 + 3600  # 2026-01-02 01:00 UTC
PER_MILLION = SimModel("m", prompt=2.0, completion=8.0, currency="CNY")
PER_THOUSAND = SimModel("k", prompt=0.004, completion=0.012, tokens_per_price=1000)
IMAGES = SimModel("i", kind=2, image=0.2)


def store() -> EventStore:
    events = EventStore()
    for ts, model, usage in [
        (NOW - 7200, "m", Usage(1_000_000, 0, 1_000_000, 1, 0)),  # yesterday: month only
        (NOW - 60, "m", Usage(500_000, 250_000, 750_000, 1, 0)),  # 1 + 2 = 3.0000
        (NOW - 30, "k", Usage(1000, 1000, 2000, 1, 0)),  # 0.004 + 0.012 = 0.016
        (NOW - 10, "i", Usage(0, 0, 0, 1, 3)),  # 0.6
        (NOW + 10, "m", Usage(1_000_000, 0, 1_000_000, 1, 0)),  # not visible yet
    ]:
        events.add(Event(ts, ts, "p", "key", model, usage))
    return events


def test_a_metered_key_has_spent_its_usage_at_list_prices() -> None:
    key = SimKey("p", "key", "n", "secret", daily_used="1.5", monthly_used="", metered=True)
    models = {m.name: m for m in (PER_MILLION, PER_THOUSAND, IMAGES)}
    now = metered(key, store(), models, NOW)
    # Today: 1.5 + 3 + 0.016 + 0.6; this month also yesterday's 2.0, from a base of nothing.
    assert (now.daily_used, now.monthly_used) == ("5.1160", "5.6160")


def test_an_unmetered_key_is_served_as_set() -> None:
    catalog = Catalog()
    catalog.add_key(SimKey("p", "key", "n", "secret", daily_used="18.60"))
    [row] = list_keys_data(catalog, {"ProjectId": "p"})
    assert (row["DailyUsedAmount"], row["MonthlyUsedAmount"]) == ("18.60", "0")
    assert Decimal(row["DailyUsedAmount"]) == Decimal("18.60")


def test_a_price_that_is_not_a_number_costs_nothing() -> None:
    hostile = SimModel("h", prompt="free", completion=8.0)
    assert cost(hostile, Usage(1_000_000, 1_000_000, 2_000_000, 1, 0)) == 0
    assert cost(PER_MILLION, Usage(1_000_000, 1_000_000, 2_000_000, 1, 0)) == 10


def test_images_cost_their_price_each_whatever_the_tokens() -> None:
    assert cost(IMAGES, Usage(1_000_000, 0, 1_000_000, 2, 5)) == Decimal("1.0")


def test_a_model_the_catalog_does_not_price_and_other_keys_cost_nothing() -> None:
    key = SimKey("p", "key", "n", "secret", metered=True)
    events = store()
    events.add(Event(NOW - 5, NOW - 5, "p", "other", "m", Usage(1_000_000, 0, 1_000_000, 1, 0)))
    events.add(Event(NOW - 5, NOW - 5, "q", "key", "m", Usage(1_000_000, 0, 1_000_000, 1, 0)))
    now = metered(key, events, {"k": PER_THOUSAND}, NOW)
    assert (now.daily_used, now.monthly_used) == ("0.0160", "0.0160")


def test_the_day_starts_at_utc_midnight_and_counts_its_first_and_last_second() -> None:
    day = NOW - 3600  # 2026-01-02 00:00 UTC
    events = EventStore()
    for ts in (day - 1, day, NOW):
        events.add(Event(ts, ts, "p", "key", "m", Usage(1_000_000, 0, 1_000_000, 1, 0)))
    key = SimKey("p", "key", "n", "secret", metered=True)
    now = metered(key, events, {"m": PER_MILLION}, NOW + 0.5)
    assert (now.daily_used, now.monthly_used) == ("4.0000", "6.0000")


def test_the_month_starts_at_its_first_utc_second() -> None:
    march = 1_772_323_200  # 2026-03-01 00:00:00 UTC
    assert month_start(march) == march
    assert month_start(march + 30 * 86400 + 86399.9) == march  # 2026-03-31 23:59:59.9
    assert month_start(march - 1) == 1_769_904_000  # 2026-02-01


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone 14 hours east of UTC, for the length of a test."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_the_month_is_the_utc_month_whatever_the_machines_zone() -> None:
    march = 1_772_323_200  # 2026-03-01 00:00:00 UTC, already 14:00 on the 1st at UTC+14
    assert month_start(march - 1) == 1_769_904_000  # 2026-02-28 23:59:59 UTC: February
    assert month_start(march + 36_000) == march


def test_used_amounts_round_half_up_to_four_places() -> None:
    cheap = SimModel("c", prompt=0.05)  # 1000 tokens cost 0.00005
    events = EventStore()
    events.add(Event(NOW - 5, NOW - 5, "p", "key", "c", Usage(1000, 0, 1000, 1, 0)))
    key = SimKey("p", "key", "n", "secret", daily_used="", monthly_used="2", metered=True)
    now = metered(key, events, {"c": cheap}, NOW)
    assert (now.daily_used, now.monthly_used) == ("0.0001", "2.0001")


def test_an_unmetered_key_keeps_its_amounts_whatever_it_spent() -> None:
    key = SimKey("p", "key", "n", "secret", daily_used="1.5", monthly_used="")
    models = {m.name: m for m in (PER_MILLION, PER_THOUSAND, IMAGES)}
    assert metered(key, store(), models, NOW) is key
