"""Budgets: period bounds, selectors, exact use, reset at the period start, config errors."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from exporter.config import BudgetConfig, ConfigError, Target, parse_config
from exporter.cost.budgets import BudgetTracker, period_bounds

T = datetime.datetime(2026, 3, 31, 23, 59, 30, tzinfo=datetime.UTC).timestamp()
A = Target(key="k1", model="m", project="p")
B = Target(key="k2", model="m", project="p")


def test_period_bounds_are_utc_days_and_months() -> None:
    start, end = period_bounds("daily", T)
    assert (end - start, start % 86400) == (86400, 0)
    assert start <= T < end
    m_start, m_end = period_bounds("monthly", T)
    assert datetime.datetime.fromtimestamp(m_start, datetime.UTC).isoformat() == \
        "2026-03-01T00:00:00+00:00"
    assert datetime.datetime.fromtimestamp(m_end, datetime.UTC).isoformat() == \
        "2026-04-01T00:00:00+00:00"
    dec = period_bounds("monthly", datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC).timestamp())
    assert datetime.datetime.fromtimestamp(dec[1], datetime.UTC).year == 2027


def test_use_counts_matching_targets_and_resets_each_period() -> None:
    tokens = BudgetConfig("k1-day", "daily", tokens=1000, key="k1")
    money = BudgetConfig("all-month", "monthly", cost=Decimal("5"), currency="USD")
    tracker = BudgetTracker((tokens, money))
    tracker.add(A, 300, Decimal("0.1"), "USD", T)
    tracker.add(B, 50, Decimal("0.2"), "USD", T)
    tracker.add(B, 50, Decimal("9"), "CNY", T)  # another currency: not this budget's money
    by_name = {b.name: b for b in tracker.snapshot(T)}
    assert (by_name["k1-day"].used, by_name["k1-day"].unit) == (Decimal(300), "tokens")
    assert (by_name["all-month"].used, by_name["all-month"].unit) == (Decimal("0.3"), "USD")
    later = T + 60  # a new day and a new month
    assert [b.used for b in tracker.snapshot(later)] == [0, 0]
    restored = BudgetTracker((tokens, money), BudgetTracker((tokens, money)).to_dict())
    assert [b.used for b in restored.snapshot(T)] == [0, 0]


def test_use_survives_a_restart_within_the_period() -> None:
    budget = BudgetConfig("d", "daily", tokens=10)
    tracker = BudgetTracker((budget,))
    tracker.add(A, 7, None, "", T)
    assert BudgetTracker((budget,), tracker.to_dict()).snapshot(T)[0].used == 7


def _budgets(raw: object) -> tuple[BudgetConfig, ...]:
    data = {"api": {"public_key": "p", "private_key": "s"}, "targets": [{"key": "k", "model": "m"}],
            "pricing": {"currency": "EUR"}, "budgets": raw}
    return parse_config(data, {}, ".").budgets


def test_budget_config_defaults_to_the_pricing_currency() -> None:
    assert _budgets([{"name": "x", "period": "monthly", "cost": "12.50"}]) == (
        BudgetConfig("x", "monthly", cost=Decimal("12.50"), currency="EUR"),)


@pytest.mark.parametrize(("raw", "message"), [
    ([{"name": "x", "period": "weekly", "tokens": 1}],
     'budgets[0].period: expected daily or monthly, got "weekly"'),
    ([{"name": "x", "period": "daily"}], "budgets[0]: set exactly one of tokens or cost"),
    ([{"name": "x", "period": "daily", "tokens": 1, "cost": 1}],
     "budgets[0]: set exactly one of tokens or cost"),
    ([{"name": "x", "period": "daily", "tokens": 1}, {"name": "x", "period": "daily", "tokens": 2}],
     'budgets[1].name: duplicate of budgets[0] ("x")'),
    ([{"name": "a b", "period": "daily", "tokens": 1}],
     "budgets[0].name: use 1-64 letters, digits, _ . : or -"),
    ({"name": "x"}, "budgets: expected a list of budgets, got {'name': 'x'} (dict)"),
])
def test_bad_budgets_are_reported(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _budgets(raw)
    assert caught.value.problems == [message]
