"""The simulator's cloud-side spend: a metered key's used amounts are its own usage at its own
list prices (ground truth for reconciling the exporter's cost), per UTC day and month."""

from __future__ import annotations

from decimal import Decimal

from exporter.simulator import Catalog, EventStore, SimKey, SimModel
from exporter.simulator.api import list_keys_data
from exporter.simulator.spend import metered
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
